"""What a run's stack exports, whatever the backend: how to reach each node."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class NodeEndpoint(BaseModel):
    """One node as execution sees it. `address`/`port` are where SSH answers for this machine;
    `private_address` is how the run's nodes reach each other (DSTACK_NODES_IPS)."""

    model_config = ConfigDict(frozen=True)

    rank: int
    address: str
    private_address: str
    port: int
    user: str
    host_key: str
    working_dir: str
    directory: str | None = None  # where the node keeps the run's files (pid file, script, venv)
    gpus: int | None = None  # GPUs the node gives the run, when the backend measured them

    @property
    def node_dir(self) -> str:
        return self.directory or self.working_dir.rsplit("/", 1)[0]


class StackOutputs(BaseModel):
    nodes: list[NodeEndpoint]

    def ranked(self) -> list[NodeEndpoint]:
        return sorted(self.nodes, key=lambda node: node.rank)
