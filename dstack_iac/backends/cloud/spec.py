"""The contract between planning and the cloud components: one typed object per cluster."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["NODE_ROOT", "NODE_USER", "ClusterSpec", "MountedVolume", "NodeHostKey", "RegistryLogin"]

from dstack_iac.model.offers import Offer
from dstack_iac.model.plan import NodeHostKey

NODE_USER = "ubuntu"
NODE_ROOT = "/opt/dstack-iac"  # runs live in <root>/run, the shared wheelhouse in <root>/wheels


class MountedVolume(BaseModel):
    """A network volume (looked up by name, or registered by id) and where the task sees it."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: str
    volume_id: str | None = None
    rank: int = 0  # the node it attaches to: a network disk attaches to one instance


class RegistryLogin(BaseModel):
    model_config = ConfigDict(frozen=True)

    server: str
    username: str
    password: SecretStr


class ClusterSpec(BaseModel):
    """Everything a cloud component needs to declare a run's nodes."""

    model_config = ConfigDict(frozen=True)

    run_name: str = Field(pattern=r"^[a-z][a-z0-9-]{1,40}$")
    offer: Offer
    nodes: int = Field(default=1, ge=1)
    node_offers: list[Offer] = Field(default_factory=list, description="Per rank, when the run's groups differ; "
                                                                       "else every node has `offer`.")
    authorized_key: str
    host_keys: list[NodeHostKey] = Field(
        default_factory=list, description="Per rank; without one a node keeps the host key its image makes.")
    ssh_cidr: str = Field(description="Who may reach the nodes' SSH port, e.g. 203.0.113.7/32.")
    disk_gb: float = 100
    image: str | None = None
    privileged: bool = Field(default=False, description="Run the task's container privileged (privileged, docker).")
    container_user: str | None = Field(default=None, description="The user the container's commands run as.")
    docker_in_docker: bool = Field(default=False, description="Start dockerd in the container first.")
    reservation: str | None = Field(default=None, description="The capacity reservation the instances use.")
    user_tags: dict[str, str] = Field(default_factory=dict, description="The task's tags, on every resource.")
    registry: RegistryLogin | None = None
    volumes: list[MountedVolume] = []
    availability_zone_name: str | None = Field(
        default=None, description="Place the nodes in this zone (by name), e.g. where the volumes are.")
    shm_gb: float | None = Field(default=None, description="Size of /dev/shm (the container's, or the node's "
                                                           "without an image).")
    owner: str = Field(default="", description="Who started the run (tagged on every resource).")
    lease_seconds: int = Field(default=0, description="Each node powers itself off when the run's owner has not "
                                                      "renewed its lease for this long (0: no lease).")
    expires_at: int = Field(default=0, description="Unix time the lease first runs out, tagged on every resource, "
                                                   "so a sweeper can tell an abandoned resource (0: unset).")

    def tags(self) -> dict[str, str]:
        """What every resource of the run carries, so a sweeper finds what belongs to which run."""
        import datetime

        tags = {**self.user_tags, "dstack-iac:run": self.run_name, "dstack-iac:owner": self.owner or "unknown"}
        if self.expires_at:
            tags["dstack-iac:expires-at"] = datetime.datetime.fromtimestamp(
                self.expires_at, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return tags

    @property
    def working_dir(self) -> str:
        return f"{NODE_ROOT}/run/workdir"

    def host_key(self, rank: int) -> NodeHostKey | None:
        return self.host_keys[rank] if rank < len(self.host_keys) else None

    def offer_of(self, rank: int) -> Offer:
        return self.node_offers[rank] if rank < len(self.node_offers) else self.offer

    def has_gpu(self, rank: int) -> bool:
        gpu = self.offer_of(rank).gpu
        return gpu is not None and gpu.count > 0

    @property
    def gpu(self) -> bool:
        """Whether any node has GPUs (the image family is chosen for the whole run)."""
        return any(self.has_gpu(rank) for rank in range(self.nodes))
