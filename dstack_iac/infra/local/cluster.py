"""The local backend's nodes as one component, with the same `nodes` output as AWS and GCP."""

from __future__ import annotations

import pulumi

from dstack_iac.infra.local.provider import LocalNode


class LocalTaskCluster(pulumi.ComponentResource):
    """`nodes` local nodes (sshd on their own loopback addresses), each in `<nodes_dir>/<rank>`."""

    nodes: pulumi.Output[list]

    def __init__(self, name: str, *, run_name: str, nodes: int, user: str, authorized_key: str, nodes_dir: str,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("dstack-iac:local:TaskCluster", name, None, opts)
        self.instances = [
            LocalNode(f"node-{rank}", run_name=run_name, rank=rank, node_dir=f"{nodes_dir}/{rank}", user=user,
                      authorized_key=authorized_key, opts=pulumi.ResourceOptions(parent=self))
            for rank in range(nodes)
        ]
        self.nodes = pulumi.Output.all(*[
            pulumi.Output.all(
                rank=rank, address=n.address, private_address=n.private_address, port=n.port, user=n.user,
                host_key=n.host_key, working_dir=n.working_dir, directory=n.directory,
            )
            for rank, n in enumerate(self.instances)
        ])
        self.register_outputs({"nodes": self.nodes})
