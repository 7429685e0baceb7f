"""The program side of the local backend: a run's nodes and a volume as Pulumi resources, with
the same `nodes` output as every backend (see model/nodes.py)."""

from __future__ import annotations

import pulumi

from dstack_iac.backends.local.handlers import NODE_TYPE, VOLUME_TYPE


class LocalNode(pulumi.CustomResource):
    """One node of a local run: an sshd on its own loopback address of this machine."""

    address: pulumi.Output[str]
    private_address: pulumi.Output[str]
    port: pulumi.Output[int]
    user: pulumi.Output[str]
    directory: pulumi.Output[str]
    working_dir: pulumi.Output[str]
    pid: pulumi.Output[int]
    host_key: pulumi.Output[str]

    def __init__(self, name: str, *, run_name: str, rank: int, node_dir: str, user: str, authorized_key: str,
                 address_base: int, lease_seconds: int = 0, opts: pulumi.ResourceOptions | None = None):
        props = {
            "run_name": run_name, "rank": rank, "node_dir": node_dir, "user": user, "authorized_key": authorized_key,
            "address_base": address_base, "lease_seconds": lease_seconds,
            "address": None, "private_address": None, "port": None, "directory": None, "working_dir": None,
            "pid": None, "host_key": None,
        }
        super().__init__(NODE_TYPE, name, props, opts)


class LocalTaskCluster(pulumi.ComponentResource):
    """`nodes` local nodes (sshd on consecutive loopback addresses), each in `<nodes_dir>/<rank>`.
    With `lease_seconds`, each node ends itself when its lease is not renewed for that long."""

    nodes: pulumi.Output[list]

    def __init__(self, name: str, *, run_name: str, nodes: int, user: str, authorized_key: str, nodes_dir: str,
                 address_base: int | None = None, lease_seconds: int = 0, opts: pulumi.ResourceOptions | None = None):
        from dstack_iac.backends.local.node import random_base

        super().__init__("dstack-iac:local:TaskCluster", name, None, opts)
        base = random_base(run_name) if address_base is None else address_base
        self.instances = [
            LocalNode(f"node-{rank}", run_name=run_name, rank=rank, node_dir=f"{nodes_dir}/{rank}", user=user,
                      authorized_key=authorized_key, address_base=base, lease_seconds=lease_seconds,
                      opts=pulumi.ResourceOptions(parent=self))
            for rank in range(nodes)
        ]
        self.node_outputs = [
            pulumi.Output.all(
                rank=rank, address=n.address, private_address=n.private_address, port=n.port, user=n.user,
                host_key=n.host_key, working_dir=n.working_dir, directory=n.directory,
            )
            for rank, n in enumerate(self.instances)
        ]
        self.nodes = pulumi.Output.all(*self.node_outputs)
        self.register_outputs({"nodes": self.nodes})


class LocalVolume(pulumi.CustomResource):
    """A local network volume: a directory under the state dir. Runs bind-mount it at the task's
    `path` inside a private mount namespace; deleting the resource deletes the data."""

    directory: pulumi.Output[str]

    def __init__(self, name: str, *, volume_name: str, directory: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__(VOLUME_TYPE, name, {"volume_name": volume_name, "directory": directory}, opts)
