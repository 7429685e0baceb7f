"""The plan of a run and what each layer hands the next on the way to the nodes."""

from __future__ import annotations

from pathlib import Path

from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from dstack_iac.config.interpolation import resolve_secrets
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


class GroupPlan(BaseModel):
    """One group of the run's nodes (a task without `groups` has one): its offer and its ranks,
    which run through the groups in order."""

    model_config = ConfigDict(frozen=True)

    name: str
    index: int
    first_rank: int
    nodes: int
    offer: Offer

    @property
    def ranks(self) -> range:
        return range(self.first_rank, self.first_rank + self.nodes)


class RunPlan(BaseModel):
    """Everything decided before anything is created: the backend, the offers, the mounts.
    `offer` is the master's (rank 0); `groups` say which offer each rank has."""

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
    force_build: bool = False  # --force-build: run the build commands even when their result is kept
    python: str  # interpreter that creates each node's virtualenv
    mounts: list[ResolvedMount] = []
    lease_seconds: int = 600  # each node ends itself when the owner has not renewed it for this long
    env_references: dict[str, SecretStr] = {}  # values of the commands' ${{ env.NAME }}, given to the shell as data
    secrets: dict[str, SecretStr] = {}  # values of the task's ${{ secrets.NAME }}, from the secret store
    groups: list[GroupPlan] = []
    # The policy packs (DIR, or DIR=CONFIG.json) that judge the stack's update itself, not only the
    # review's preview: what the engine is about to create is checked again as it creates it.
    policy_packs: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _one_group(cls, value: Any) -> Any:
        # A plan made without groups (one offer for every node) has one group.
        if isinstance(value, dict) and not value.get("groups") and "offer" in value:
            value = {**value, "groups": [GroupPlan(name="0", index=0, first_rank=0, nodes=value.get("nodes", 1),
                                                   offer=value["offer"])]}
        return value

    @property
    def volume_names(self) -> list[str]:
        return sorted({m.volume for m in self.mounts if m.volume})

    @property
    def total_price(self) -> float:
        return sum(group.offer.price * group.nodes for group in self.groups)

    @property
    def heterogeneous(self) -> bool:
        return len({group.offer.model_dump_json() for group in self.groups}) > 1

    def group_of(self, rank: int) -> GroupPlan:
        return next(group for group in self.groups if rank in group.ranks)

    def offer_of(self, rank: int) -> Offer:
        return self.group_of(rank).offer

    def env(self) -> dict[str, str]:
        """The task's env with its `${{ secrets.NAME }}` resolved (for the node script only)."""
        values = {name: value.get_secret_value() for name, value in self.secrets.items()}
        return {key: resolve_secrets(value, values) for key, value in self.configuration.env.items()}

    @property
    def secret_values(self) -> list[str]:
        """What must never be shown: the task's secrets and its registry password, as resolved."""
        values = [value.get_secret_value() for value in self.secrets.values()]
        auth = self.configuration.registry_auth
        if auth is not None:
            values.append(self.resolved_secret_text(auth.password.get_secret_value()))
        return sorted({value for value in values if value}, key=len, reverse=True)

    def resolved_secret_text(self, text: str) -> str:
        return resolve_secrets(text, {name: value.get_secret_value() for name, value in self.secrets.items()})

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
    build_cache: str | None = None  # where --build keeps built venvs on the node's machine (execution/build.py)
    namespace_mounts: list[tuple[str, str]] = []  # (source on the node's machine, path the task sees)
    # Directories laid over privately (an overlay on a tmpfs), so that files placed under them
    # reach the task and never the machine; `kept_dirs` stay the machine's own beneath them.
    private_roots: list[str] = []
    kept_dirs: list[str] = []
    repo_dir: str | None = None  # where the repo is unpacked on the node when not at its own path
