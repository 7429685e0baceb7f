"""The Pulumi resource for a local node: a Python dynamic provider around `node.start_node`."""

from __future__ import annotations

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider

from dstack_iac.infra.local.node import start_node, stop_node

INPUTS = ("run_name", "rank", "node_dir", "user", "authorized_key")


class LocalNodeProvider(ResourceProvider):
    def create(self, props: dict) -> CreateResult:
        inputs = {key: props[key] for key in INPUTS}
        inputs["rank"] = int(inputs["rank"])  # Pulumi carries numbers as floats
        outputs = start_node(**inputs)
        return CreateResult(id_=f"{props['run_name']}-{props['rank']}", outs={**props, **outputs})

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        changed = [key for key in INPUTS if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=True)

    def delete(self, _id: str, props: dict) -> None:
        pid = props.get("pid")
        stop_node(props["directory"], int(pid) if pid else None)


class LocalNode(Resource):
    """One node of a local run. Outputs: address, private_address, port, user, directory,
    working_dir, pid, host_key."""

    address: pulumi.Output[str]
    private_address: pulumi.Output[str]
    port: pulumi.Output[int]
    user: pulumi.Output[str]
    directory: pulumi.Output[str]
    working_dir: pulumi.Output[str]
    pid: pulumi.Output[int]
    host_key: pulumi.Output[str]

    def __init__(self, name: str, *, run_name: str, rank: int, node_dir: str, user: str, authorized_key: str,
                 opts: pulumi.ResourceOptions | None = None):
        props = {
            "run_name": run_name, "rank": rank, "node_dir": node_dir, "user": user, "authorized_key": authorized_key,
            "address": None, "private_address": None, "port": None, "directory": None, "working_dir": None,
            "pid": None, "host_key": None,
        }
        super().__init__(LocalNodeProvider(), name, props, opts)
