"""The Pulumi program of a run: what each run's ephemeral stack declares.

Whatever the backend, the stack exports the same outputs, which execution consumes:
`nodes` (per rank: address, private_address, port, user, host_key, working_dir) and `key_path`.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from dstack_iac.paths import run_dir
from dstack_iac.runs.plan import RunPlan


class NodeEndpoint(BaseModel):
    rank: int
    address: str
    private_address: str
    port: int
    user: str
    host_key: str
    working_dir: str
    directory: str | None = None


class StackOutputs(BaseModel):
    nodes: list[NodeEndpoint]
    key_path: str


def run_program(plan: RunPlan, public_key: str, user: str) -> Callable[[], None]:
    def program() -> None:
        import pulumi

        if plan.backend == "local":
            from dstack_iac.infra.local.provider import LocalNode

            nodes = [
                LocalNode(
                    f"node-{rank}", run_name=plan.run_name, rank=rank,
                    node_dir=str(run_dir(plan.run_name) / "nodes" / str(rank)), user=user, authorized_key=public_key,
                )
                for rank in range(plan.nodes)
            ]
        else:  # pragma: no cover - guarded by planning
            raise ValueError(f"unsupported backend {plan.backend}")
        pulumi.export("nodes", [
            pulumi.Output.all(
                rank=rank, address=n.address, private_address=n.private_address, port=n.port, user=n.user,
                host_key=n.host_key, working_dir=n.working_dir, directory=n.directory,
            )
            for rank, n in enumerate(nodes)
        ])
        pulumi.export("key_path", str(run_dir(plan.run_name) / "id_ed25519"))

    return program
