"""The `gcp` backend."""

from __future__ import annotations

from typing import Any, ClassVar

from dstack_iac.backends.cloud.spec import ClusterSpec
from dstack_iac.backends.cloud.vm import CloudBackend
from dstack_iac.backends.gcp import catalog, credentials, sweeper
from dstack_iac.config.models import VolumeConfiguration
from dstack_iac.model.backend import OfferRequest
from dstack_iac.offers.query import OfferQuery


class GcpBackend(CloudBackend):
    name: ClassVar[str] = "gcp"
    summary: ClassVar[str] = "Compute Engine instances (pulumi-gcp), cheapest matching offer of the bundled catalog"
    catalog = catalog.CATALOG
    credential_source = staticmethod(credentials.credential_source)
    credential_chain = credentials.CHAIN
    capacity_markers: ClassVar[tuple[str, ...]] = (
        "ZONE_RESOURCE_POOL_EXHAUSTED", "does not have enough resources available", "QUOTA_EXCEEDED",
        "STOCKOUT", "resource pool exhausted",
    )

    def offer_query(self, request: OfferRequest) -> OfferQuery:
        query = super().offer_query(request)
        place = request.volume_place
        # Disks are zonal and GCP zones are named as in the catalog: pin both.
        if place and place.region:
            update: dict = {"regions": (place.region,)}
            if place.availability_zone:
                update["availability_zones"] = (place.availability_zone,)
            query = query.model_copy(update=update)
        return query

    first_removed = sweeper.FIRST

    def discovery_program(self, runs_with_stacks: set[str]):
        return sweeper.discovery_program(runs_with_stacks)

    def volume_zone(self, volume: VolumeConfiguration) -> str | None:
        return volume.availability_zone or (f"{volume.region}-a" if volume.region else None)

    def cluster_component(self, name: str, spec: ClusterSpec) -> Any:
        from dstack_iac.backends.gcp.components import GcpTaskCluster

        return GcpTaskCluster(name, spec)

    def storage_component(self, name: str, region: str, archives: dict[str, Any]) -> Any:
        from dstack_iac.backends.gcp.storage import GcpBuildStorage

        return GcpBuildStorage(name, region=region, archives=archives)

    def volume_component(self, name: str, volume: VolumeConfiguration) -> Any:
        from dstack_iac.backends.gcp.components import GcpVolume

        return GcpVolume(name, volume_name=volume.name, zone=self.volume_zone(volume) or "", size_gb=volume.size,
                         volume_id=volume.volume_id)
