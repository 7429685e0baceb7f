"""The plan of a run and what each layer hands the next on the way to the nodes."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr

from dstack_iac.config.models import TaskConfiguration
from dstack_iac.model.offers import Offer


class ResolvedMount(BaseModel):
    """`source` (a directory of the node's machine, or the volume's disk on clouds) appears at
    `path` on node `rank`."""

    model_config = ConfigDict(frozen=True)

    rank: int
    path: str
    source: str
    volume: str | None = None  # the network volume's name; None for an instance path
    backend: str | None = None
    region: str | None = None
    availability_zone: str | None = None


class RunPlan(BaseModel):
    """Everything decided before anything is created: the backend, the offer, the mounts."""

    model_config = ConfigDict(frozen=True)

    run_name: str
    configuration: TaskConfiguration
    configuration_path: str
    repo_dir: Path
    backend: str
    offer: Offer
    nodes: int
    run_args: list[str] = []
    build: bool = False
    python: str  # interpreter that creates each node's virtualenv
    mounts: list[ResolvedMount] = []
    lease_seconds: int = 600  # each node ends itself when the owner has not renewed it for this long
    env_references: dict[str, SecretStr] = {}  # values of the commands' ${{ env.NAME }}, given to the shell as data

    @property
    def volume_names(self) -> list[str]:
        return sorted({m.volume for m in self.mounts if m.volume})

    @property
    def total_price(self) -> float:
        return self.offer.price * self.nodes

    def mounts_of(self, rank: int) -> list[ResolvedMount]:
        return [m for m in self.mounts if m.rank == rank]


class NodeHostKey(BaseModel):
    """A host key the run generated for one node, so the SSH client can pin it from the start."""

    model_config = ConfigDict(frozen=True)

    public: str
    private: SecretStr


class RunInputs(BaseModel):
    """What a backend prepared for a run before its stack is declared: the run's own key pair
    (the private key stays on this machine at `key_path`), the user the nodes log in as, and
    where a backend needs them, each node's host key and who may reach the nodes over SSH."""

    model_config = ConfigDict(frozen=True)

    run_name: str
    run_dir: str
    public_key: str
    key_path: str
    user: str
    host_keys: list[NodeHostKey] = []
    ssh_cidr: str | None = None

    @property
    def known_hosts(self) -> Path:
        return Path(self.run_dir) / "known_hosts"


class NodeRuntime(BaseModel):
    """How the node script is set up on one node, beyond the plan: where the shared caches are,
    and which directories a private mount namespace puts at which paths."""

    model_config = ConfigDict(frozen=True)

    pip_cache_dir: str | None = None
    wheelhouse: str | None = None
    venv_seeds: str | None = None
    namespace_mounts: list[tuple[str, str]] = []  # (source on the node's machine, path the task sees)
