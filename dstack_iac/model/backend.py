"""The Backend protocol: everything the rest of the package needs from a backend, and nothing
else. A backend is one package under `dstack_iac/backends/`, registered by name in
`backends/registry.py`; no module outside `backends/` names one.

The lifecycle of a run asks a backend, in order:

    check_task, offers, node_python         planning (pure apart from reading this machine)
    check_access                            before anything is declared: credentials
    prepare                                 the run's keys and inputs
    declare_cluster                         inside the run's Pulumi program
    connect, node_runtime, forward_ports    execution over SSH
    classify                                is a failure worth a retry, and which event is it
    sweep                                   what a run left outside its stack (gc, stop)
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, SkipValidation

from dstack_iac.config.models import PortMapping, RetryEvent, TaskConfiguration, VolumeConfiguration
from dstack_iac.model.nodes import NodeEndpoint
from dstack_iac.model.offers import Catalog, Offer
from dstack_iac.model.plan import NodeRuntime, RunInputs, RunPlan

if TYPE_CHECKING:  # the session type lives in execution; only its shape matters here
    from dstack_iac.execution.session import NodeSession


class Capability(str, Enum):
    """What a backend can do beyond running commands on a machine; tasks that ask for one are
    refused, before anything is created, on a backend that lacks it (plan/capabilities.py)."""

    CONTAINERS = "containers"  # the commands run in an image (image, shm_size)
    PRIVILEGED = "privileged"  # a privileged container (privileged)
    DOCKER_IN_DOCKER = "docker-in-docker"  # docker: true
    CUDA_COMPILER = "cuda-compiler"  # nvcc: an image with the CUDA toolkit
    RUN_AS_USER = "run-as-user"  # user
    RESERVATIONS = "reservations"  # reservation
    EXISTING_MACHINES = "existing-machines"  # fleets, instances, creation_policy: reuse
    REPO_CLONE_ON_NODE = "repo-clone-on-node"  # a repo URL is cloned by the node (else by the CLI, uploaded)


class Check(BaseModel):
    """One line of `dstack-iac doctor`."""

    model_config = ConfigDict(frozen=True)

    name: str
    ok: bool
    detail: str
    fix: str = ""
    info: bool = False  # reported, never a problem


class VolumePlace(BaseModel):
    """Where a volume the run mounts lives: its nodes must go there."""

    model_config = ConfigDict(frozen=True)

    region: str | None = None
    availability_zone: str | None = None


class Orphan(BaseModel):
    """A cloud resource a run tagged (`dstack-iac:run`) whose run has no stack any more."""

    model_config = ConfigDict(frozen=True)

    backend: str
    run: str
    type: str  # the Pulumi resource type, e.g. aws:ec2/instance:Instance
    id: str
    region: str | None = None
    owner: str | None = None
    expires_at: str | None = None


class OfferRequest(BaseModel):
    """What planning asks each candidate backend."""

    model_config = ConfigDict(frozen=True)

    # Validated when loaded; the planner narrows it to one node group (its nodes and resources),
    # which a second validation would judge as a whole task.
    configuration: SkipValidation[TaskConfiguration]
    volume_place: VolumePlace | None = None


@runtime_checkable
class ClusterResource(Protocol):
    """A run's nodes as a Pulumi component: `nodes` resolves to one NodeEndpoint dict per rank.
    A component may also offer `node_outputs` (one Output per rank, each resolving as soon as its
    node exists), so the run can connect to a node while the others are still being created."""

    nodes: Any  # pulumi.Output[list[dict]]


@runtime_checkable
class Backend(Protocol):
    name: ClassVar[str]
    summary: ClassVar[str]
    # Resource inputs too long or too secret for the preview table (user data, scripts, keys).
    hidden_inputs: ClassVar[frozenset[str]]
    # The priced offers of a cloud (listed by `offers`, refreshed by `offers --refresh`); None when
    # the backend's offers are machines it measures (local, ssh).
    catalog: ClassVar[Catalog | None]
    capabilities: ClassVar[frozenset[Capability]]
    # Resource inputs every launch chooses anew (a local node's directory and address, the lease's
    # expiry in tags): a reviewed plan shows them as such and does not compare them.
    per_launch_inputs: ClassVar[frozenset[str]]
    # The run's nodes are processes of the machine that started it (local), or what tears them
    # down exists only there (ssh: lease records, the fleet's identity files): only that machine
    # may stop them, and its provider refuses to act anywhere else. `host_bound_why` says why.
    host_bound: ClassVar[bool]
    host_bound_why: ClassVar[str]

    def lacks(self, capability: Capability, field: str) -> tuple[str, str]:
        """Why this backend cannot honour `field` (which needs `capability`), and what would."""

    def considered_by_default(self) -> bool:
        """Whether a task that names no backend may run here."""

    def check_task(self, configuration: TaskConfiguration) -> None:
        """Refuse (UnsupportedField) what this backend cannot honour, before anything is created."""

    def offers(self, request: OfferRequest) -> list[Offer]:
        """Matching offers, cheapest first; NoOffer naming what excluded the rest."""

    def node_python(self, version: str | None) -> str:
        """The interpreter that makes each node's virtualenv for `python: version`."""

    def instance_path_exists(self, path: str) -> bool | None:
        """Whether an instance volume's path exists on the nodes' machine (None: cannot tell here)."""

    def check_volume(self, volume: VolumeConfiguration) -> list[tuple[str, str]]:
        """(field, problem) pairs for a `type: volume` file on this backend."""

    def volume_zone(self, volume: VolumeConfiguration) -> str | None:
        """The zone a volume is created in when the file does not say."""

    def check_access(self) -> str:
        """Where the credentials come from ("" when none are needed); MissingCredentials otherwise."""

    def node_user(self) -> str:
        """The user the nodes' SSH sessions log in as."""

    def prepare(self, plan: RunPlan, run_dir: Path, *, preview: bool = False) -> RunInputs:
        """The run's key pair and whatever else the cluster needs (placeholders when previewing)."""

    def declare_cluster(self, name: str, plan: RunPlan, inputs: RunInputs) -> ClusterResource:
        """The run's nodes, inside a Pulumi program."""

    def declare_volume(self, name: str, volume: VolumeConfiguration) -> dict[str, Any]:
        """A volume, inside a Pulumi program: outputs `source`, `volume_id`, `availability_zone`."""

    def connect(self, endpoint: NodeEndpoint, inputs: RunInputs) -> NodeSession:
        """An SSH session to a node once it is ready for the run's commands."""

    def node_runtime(self, plan: RunPlan, endpoint: NodeEndpoint) -> NodeRuntime:
        """Caches and private mounts of the node script on this node."""

    def forward_ports(self, session: NodeSession, ports: Sequence[PortMapping]) -> AbstractContextManager[list]:
        """Make the task's ports reachable on this machine while attached: [(local, remote)]."""

    def classify(self, error: BaseException) -> RetryEvent | None:
        """The retry event a failure counts as, or None when it must fail at once (a bug, bad input)."""

    def leftovers(self, run_name: str, run_dir: Path) -> list[str]:
        """What the run left outside its stack, without removing it (for `gc`'s table)."""

    def sweep(self, run_name: str, run_dir: Path) -> list[str]:
        """Remove what the run left outside its stack (processes, directories, keys): what was removed."""

    def find_orphans(self, runs_with_stacks: set[str]) -> list[Orphan]:
        """Resources in the backend's own account tagged by a run that has no stack any more."""

    def remove_orphans(self, orphans: Sequence[Orphan]) -> list[str]:
        """Delete such resources directly (no stack knows them): what was removed."""

    def doctor_checks(self) -> list[Check]:
        """What `dstack-iac doctor` reports for this backend."""

    def build_storage_region(self, plan: RunPlan) -> str | None:
        """Where `--build` results are kept off the nodes (a bucket per region, see
        runs/build_cache.py), or None when the nodes' machines keep them (their build cache)."""

    def declare_build_storage(self, name: str, region: str, archives: dict[str, Any]) -> dict[str, Any]:
        """The build storage of a region, inside a Pulumi program: outputs `bucket`."""
