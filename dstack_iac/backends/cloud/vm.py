"""What a cloud backend that rents VMs does the same way on AWS and GCP: offers from its catalog,
credentials from its chain, per-run host keys and the caller's address, the first-boot script,
and waiting for the node to be ready before the commands."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import SecretStr

from dstack_iac.backends.base import BaseBackend, generate_key_pair
from dstack_iac.backends.cloud.credentials import CredentialSource, require_credentials
from dstack_iac.backends.cloud.node_setup import READY_MARKER
from dstack_iac.backends.cloud.spec import NODE_ROOT, NODE_USER, ClusterSpec, MountedVolume, RegistryLogin
from dstack_iac.config.models import TaskConfiguration, VolumeConfiguration
from dstack_iac.model.backend import Capability, Check, OfferRequest, Orphan
from dstack_iac.model.nodes import NodeEndpoint
from dstack_iac.model.offers import Offer
from dstack_iac.errors import BadInput
from dstack_iac.model.plan import NodeHostKey, NodeRuntime, RunInputs, RunPlan
from dstack_iac.offers.catalog import catalog_rows
from dstack_iac.offers.query import OfferQuery, find_offers
from dstack_iac.state import identity

BOOT_TIMEOUT = 900  # boot, first-boot script (Docker, image pull)
CLOUD_PYTHON = "python3"  # the node image's interpreter
PLACEHOLDER_HOST_KEY = NodeHostKey(public="ssh-ed25519 (generated at launch)", private=SecretStr("(generated at launch)"))


def registry_server(image: str) -> str:
    """The registry an image is pulled from: its first path part when it looks like a host."""
    first = image.split("/")[0]
    return first if ("." in first or ":" in first) and "/" in image else "docker.io"


class CloudBackend(BaseBackend):
    credential_source: ClassVar[CredentialSource]
    credential_chain: ClassVar[Sequence[str]]
    hidden_inputs: ClassVar[frozenset[str]] = frozenset({"authorized_key", "public_key", "user_data",
                                                         "metadata_startup_script", "metadata"})
    # The nodes are VMs of their own: containers of any kind, any user, a reservation to run in.
    # Tags carry the lease's expiry and the owner: set at launch.
    per_launch_inputs: ClassVar[frozenset[str]] = frozenset({"tags", "volume_tags", "labels"})
    capabilities: ClassVar[frozenset[Capability]] = frozenset({
        Capability.CONTAINERS, Capability.PRIVILEGED, Capability.DOCKER_IN_DOCKER, Capability.CUDA_COMPILER,
        Capability.RUN_AS_USER, Capability.RESERVATIONS, Capability.REPO_CLONE_ON_NODE})

    # --- planning ----------------------------------------------------------------------------

    def offer_query(self, request: OfferRequest) -> OfferQuery:
        """The catalog query; a run goes where its volumes are (subclasses say how to pin it)."""
        return OfferQuery.from_configuration(request.configuration, (self.name,))

    def offers(self, request: OfferRequest) -> list[Offer]:
        assert self.catalog is not None
        return find_offers(self.offer_query(request), catalog_rows(self.catalog))

    def node_python(self, version: str | None) -> str:
        return f"python{version}" if version else CLOUD_PYTHON

    def check_volume(self, volume: VolumeConfiguration) -> list[tuple[str, str]]:
        problems = []
        if not volume.region:
            problems.append(("region", f"is required for the {self.name} backend"))
        if volume.size is None and not volume.volume_id:
            problems.append(("size", "is required (or give volume_id to register an existing disk)"))
        return problems

    def check_access(self) -> str:
        return require_credentials(self.name, type(self).credential_source, self.credential_chain)

    # --- before declaring --------------------------------------------------------------------

    def node_user(self) -> str:
        return NODE_USER

    def prepare(self, plan: RunPlan, run_dir: Path, *, preview: bool = False) -> RunInputs:
        from dstack_iac.backends.cloud.network import caller_ssh_cidr

        public_key, key_path = self.run_key(plan.run_name, run_dir, preview=preview)
        host_keys = [PLACEHOLDER_HOST_KEY] * plan.nodes if preview else \
            [self._host_key(run_dir / f"host_key_{rank}", f"{plan.run_name}-{rank}") for rank in range(plan.nodes)]
        return RunInputs(run_name=plan.run_name, run_dir=str(run_dir), public_key=public_key, key_path=key_path,
                         user=NODE_USER, host_keys=host_keys, ssh_cidr=caller_ssh_cidr())

    @staticmethod
    def _host_key(path: Path, comment: str) -> NodeHostKey:
        """A node's host key, made by the run so the client can pin it from the start."""
        public = generate_key_pair(path, f"dstack-iac-{comment}")
        key = NodeHostKey(public=" ".join(public.split()[:2]), private=SecretStr(path.read_text()))
        path.unlink()
        path.with_suffix(".pub").unlink(missing_ok=True)
        return key

    def cluster_spec(self, plan: RunPlan, inputs: RunInputs) -> ClusterSpec:
        """A cloud run's ClusterSpec: the plan, the run's keys, and its volumes per rank."""
        configuration = plan.configuration
        volumes = [MountedVolume(name=m.volume, path=m.path, rank=m.rank,
                                 volume_id=m.source if m.source != m.volume else None)
                   for m in plan.mounts if m.volume]
        zones = {m.availability_zone for m in plan.mounts if m.volume and m.availability_zone}
        registry = None
        if configuration.registry_auth and configuration.image:
            auth = configuration.registry_auth
            registry = RegistryLogin(server=registry_server(configuration.image),
                                     username=plan.resolved_secret_text(auth.username),
                                     password=SecretStr(plan.resolved_secret_text(auth.password.get_secret_value())))
        if not inputs.ssh_cidr:
            raise BadInput(f"{self.name} nodes need ssh_cidr: the address range allowed to reach them over SSH")
        return ClusterSpec(
            run_name=plan.run_name, offer=plan.offer, nodes=plan.nodes, authorized_key=inputs.public_key,
            node_offers=[plan.offer_of(rank) for rank in range(plan.nodes)] if plan.heterogeneous else [],
            host_keys=inputs.host_keys, ssh_cidr=inputs.ssh_cidr,
            disk_gb=plan.offer.disk_gb, image=configuration.container_image, registry=registry, volumes=volumes,
            privileged=configuration.privileged or bool(configuration.docker), container_user=configuration.user,
            docker_in_docker=bool(configuration.docker), reservation=configuration.reservation,
            user_tags=configuration.tags or {},
            availability_zone_name=next(iter(zones)) if len(zones) == 1 else None,
            shm_gb=configuration.resources.shm_size, owner=identity.owner(),
            lease_seconds=plan.lease_seconds, expires_at=int(time.time()) + plan.lease_seconds if plan.lease_seconds else 0,
        )

    def declare_cluster(self, name: str, plan: RunPlan, inputs: RunInputs) -> Any:
        return self.cluster_component(name, self.cluster_spec(plan, inputs))

    def cluster_component(self, name: str, spec: ClusterSpec) -> Any:
        raise NotImplementedError

    def build_storage_region(self, plan: RunPlan) -> str | None:
        # A VM's disk goes with the run: what it built is kept in the region's bucket.
        return plan.offer.region

    def declare_build_storage(self, name: str, region: str, archives: dict[str, Any]) -> dict[str, Any]:
        from dstack_iac.backends.cloud.storage import StoredArchive

        stored = {key: StoredArchive.model_validate(archive) for key, archive in archives.items()}
        return {"bucket": self.storage_component(name, region, stored).bucket_name}

    def storage_component(self, name: str, region: str, archives: dict[str, Any]) -> Any:
        raise NotImplementedError

    def volume_component(self, name: str, volume: VolumeConfiguration) -> Any:
        """The cloud's volume component: outputs `volume_id` and `availability_zone`."""
        raise NotImplementedError

    def declare_volume(self, name: str, volume: VolumeConfiguration) -> dict[str, Any]:
        component = self.volume_component(name, volume)
        return {"source": component.volume_id, "volume_id": component.volume_id,
                "availability_zone": component.availability_zone}

    # --- executing ---------------------------------------------------------------------------

    def connect(self, endpoint: NodeEndpoint, inputs: RunInputs):
        from dstack_iac.execution.session import NodeSession

        return NodeSession.when_ready(endpoint, Path(inputs.key_path), inputs.known_hosts, READY_MARKER,
                                      timeout=BOOT_TIMEOUT)

    def node_runtime(self, plan: RunPlan, endpoint: NodeEndpoint) -> NodeRuntime:
        # A node keeps its wheelhouse and venv seeds next to its runs' directories; volumes are
        # mounted at their paths at boot.
        return NodeRuntime(wheelhouse=f"{NODE_ROOT}/wheels", venv_seeds=f"{NODE_ROOT}/venv-seeds",
                           build_cache=f"{NODE_ROOT}/builds")

    def doctor_checks(self) -> list[Check]:
        from dstack_iac.errors import MissingCredentials

        try:
            detail = self.check_access()
        except MissingCredentials:
            detail = f"none found (needed only for -b {self.name}; see docs/backends.md)"
        return [Check(name=f"{self.name} credentials", ok=True, detail=detail, info=True)]

    def check_task(self, configuration: TaskConfiguration) -> None:
        return None

    # --- garbage -----------------------------------------------------------------------------

    first_removed: ClassVar[tuple[str, ...]] = ()  # resource types that must go before the others

    def discovery_program(self, runs_with_stacks: set[str]):
        raise NotImplementedError

    def import_id(self, orphan: Orphan) -> str:
        return orphan.id

    def find_orphans(self, runs_with_stacks: set[str]) -> list[Orphan]:
        from dstack_iac.backends.cloud.sweeper import discover

        return discover(self.discovery_program(runs_with_stacks))

    def remove_orphans(self, orphans: Sequence[Orphan]) -> list[str]:
        from dstack_iac.backends.cloud.sweeper import remove

        removed = []
        for run_name in sorted({o.run for o in orphans}):
            mine = [o for o in orphans if o.run == run_name]
            first = [o for o in mine if o.type in self.first_removed]
            removed += remove(run_name, [first, [o for o in mine if o not in first]], self.import_id)
        return removed
