"""What most backends do the same way, so that a backend only writes what is its own."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dstack_iac.config.models import PortMapping, RetryEvent, TaskConfiguration, VolumeConfiguration
from dstack_iac.errors import NodeLost, ProvisioningFailed
from dstack_iac.model.backend import Capability, Check, Orphan
from dstack_iac.model.nodes import NodeEndpoint
from dstack_iac.model.offers import Catalog
from dstack_iac.model.plan import NodeRuntime, RunInputs, RunPlan

if TYPE_CHECKING:  # SSH (paramiko) loads only when a run reaches its nodes: planning stays fast
    from dstack_iac.execution.session import NodeSession

PLACEHOLDER_KEY = "ssh-ed25519 (generated at launch)"

_LACKING = {
    Capability.CONTAINERS: "it runs the commands directly on the machine, with no container runtime",
    Capability.PRIVILEGED: "its commands run in no container that could be privileged",
    Capability.DOCKER_IN_DOCKER: "it runs no containers, so none can run Docker inside",
    Capability.CUDA_COMPILER: "it brings no image with the CUDA toolkit (nvcc works if the machine has it)",
    Capability.RUN_AS_USER: "its nodes run the commands as the user its SSH sessions log in as",
    Capability.RESERVATIONS: "it has no capacity reservations",
    Capability.EXISTING_MACHINES: "it creates its machines for each run; existing ones are an SSH fleet's hosts",
}


def generate_key_pair(path: Path, comment: str) -> str:
    """An ed25519 key pair at `path` (OpenSSH format, 0600) and `path.pub`; returns the public
    key. Made in this process (no ssh-keygen to start)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from dstack_iac.paths import write_private

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = f"{public.decode()} {comment}"
    write_private(path, private)
    write_private(path.with_suffix(".pub"), line + "\n", mode=0o644)
    return line


class BaseBackend:
    """Defaults of the Backend protocol (model/backend.py); subclasses override what differs."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    hidden_inputs: ClassVar[frozenset[str]] = frozenset({"authorized_key"})
    catalog: ClassVar[Catalog | None] = None
    # Fragments of the cloud's error text that mean "no capacity" (retry: no-capacity).
    capacity_markers: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    per_launch_inputs: ClassVar[frozenset[str]] = frozenset()
    host_bound: ClassVar[bool] = False
    host_bound_why: ClassVar[str] = "its nodes are processes of that machine, which only it can stop"

    def lacks(self, capability: Capability, field: str) -> tuple[str, str]:
        return (_LACKING.get(capability, f"it has no {capability.value}"),
                "choose a backend that has it (see `dstack-iac offers`)")

    def considered_by_default(self) -> bool:
        return False

    def check_task(self, configuration: TaskConfiguration) -> None:
        return None

    def instance_path_exists(self, path: str) -> bool | None:
        return None

    def check_volume(self, volume: VolumeConfiguration) -> list[tuple[str, str]]:
        return []

    def volume_zone(self, volume: VolumeConfiguration) -> str | None:
        return volume.availability_zone

    def check_access(self) -> str:
        return ""

    def run_key(self, run_name: str, run_dir: Path, *, preview: bool) -> tuple[str, str]:
        """The run's own key pair: (public key, private key path)."""
        key_path = run_dir / "id_ed25519"
        if preview:
            return PLACEHOLDER_KEY, str(key_path)
        return generate_key_pair(key_path, f"dstack-iac-{run_name}"), str(key_path)

    def prepare(self, plan: RunPlan, run_dir: Path, *, preview: bool = False) -> RunInputs:
        public_key, key_path = self.run_key(plan.run_name, run_dir, preview=preview)
        return RunInputs(run_name=plan.run_name, run_dir=str(run_dir), public_key=public_key, key_path=key_path,
                         user=self.node_user())

    def node_user(self) -> str:
        raise NotImplementedError

    def connect(self, endpoint: NodeEndpoint, inputs: RunInputs) -> NodeSession:
        from dstack_iac.execution.session import NodeSession

        return NodeSession(endpoint, Path(inputs.key_path), inputs.known_hosts)

    def node_runtime(self, plan: RunPlan, endpoint: NodeEndpoint) -> NodeRuntime:
        return NodeRuntime()

    def forward_ports(self, session: NodeSession, ports: Sequence[PortMapping]) -> AbstractContextManager[list]:
        from dstack_iac.execution.ports import forward_ports

        return forward_ports(session, ports)

    def is_capacity_error(self, text: str) -> bool:
        lowered = text.lower()
        return any(marker.lower() in lowered for marker in self.capacity_markers)

    def classify(self, error: BaseException) -> RetryEvent | None:
        if isinstance(error, ProvisioningFailed):
            return RetryEvent.NO_CAPACITY if error.capacity else None
        from dstack_iac.execution.session import SESSION_ERRORS

        if isinstance(error, (NodeLost, TimeoutError, *SESSION_ERRORS)):
            return RetryEvent.INTERRUPTION
        return None

    def leftovers(self, run_name: str, run_dir: Path) -> list[str]:
        return []

    def sweep(self, run_name: str, run_dir: Path) -> list[str]:
        return []

    def find_orphans(self, runs_with_stacks: set[str]) -> list[Orphan]:
        return []

    def remove_orphans(self, orphans: Sequence[Orphan]) -> list[str]:
        return []

    def doctor_checks(self) -> list[Check]:
        return []

    def build_storage_region(self, plan: RunPlan) -> str | None:
        return None

    def declare_build_storage(self, name: str, region: str, archives: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError(f"the {self.name} backend keeps builds on its nodes' machines")

    def declare_volume(self, name: str, volume: VolumeConfiguration) -> dict[str, Any]:
        raise NotImplementedError(f"the {self.name} backend has no volumes")
