"""The `aws` backend."""

from __future__ import annotations

from typing import Any, ClassVar

from dstack_iac.backends.aws import catalog, credentials, sweeper
from dstack_iac.backends.cloud.spec import ClusterSpec
from dstack_iac.backends.cloud.vm import CloudBackend
from dstack_iac.config.models import VolumeConfiguration
from dstack_iac.model.backend import OfferRequest, Orphan
from dstack_iac.offers.query import OfferQuery


class AwsBackend(CloudBackend):
    name: ClassVar[str] = "aws"
    summary: ClassVar[str] = "EC2 instances (pulumi-aws), cheapest matching offer of the bundled catalog"
    catalog = catalog.CATALOG
    credential_source = staticmethod(credentials.credential_source)
    credential_chain = credentials.CHAIN
    # EC2's words for "not now, not here": worth a retry elsewhere or later.
    capacity_markers: ClassVar[tuple[str, ...]] = (
        "InsufficientInstanceCapacity", "InsufficientHostCapacity", "InsufficientReservedInstanceCapacity",
        "MaxSpotInstanceCountExceeded", "SpotMaxPriceTooLow", "InstanceLimitExceeded", "Unsupported: Your requested "
        "instance type", "VcpuLimitExceeded",
    )

    def offer_query(self, request: OfferRequest) -> OfferQuery:
        query = super().offer_query(request)
        place = request.volume_place
        # Catalog zones are account-independent AZ ids: pin the region here, and the component
        # places the nodes in the volume's zone by name.
        if place and place.region:
            query = query.model_copy(update={"regions": (place.region,)})
        return query

    first_removed = sweeper.FIRST

    def discovery_program(self, runs_with_stacks: set[str]):
        from dstack_iac.offers.catalog import catalog_rows

        return sweeper.discovery_program(sorted({row.region for row in catalog_rows(self.catalog)}), runs_with_stacks)

    def import_id(self, orphan: Orphan) -> str:
        return sweeper.import_id(orphan)

    def volume_zone(self, volume: VolumeConfiguration) -> str | None:
        return volume.availability_zone or (f"{volume.region}a" if volume.region else None)

    def cluster_component(self, name: str, spec: ClusterSpec) -> Any:
        from dstack_iac.backends.aws.components import AwsTaskCluster

        return AwsTaskCluster(name, spec)

    def storage_component(self, name: str, region: str, archives: dict[str, Any]) -> Any:
        from dstack_iac.backends.aws.storage import AwsBuildStorage

        return AwsBuildStorage(name, region=region, archives=archives)

    def volume_component(self, name: str, volume: VolumeConfiguration) -> Any:
        from dstack_iac.backends.aws.components import AwsVolume

        return AwsVolume(name, volume_name=volume.name, region=volume.region or "",
                         availability_zone=self.volume_zone(volume) or "", size_gb=volume.size,
                         volume_id=volume.volume_id)
