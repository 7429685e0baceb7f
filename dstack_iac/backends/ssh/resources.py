"""The program side of the ssh backend: a fleet's hosts (stack `fleet-<name>`) and a run's leases
on them (the run's stack), as Pulumi resources served by the package's own provider
(handlers.py). A run's cluster exports the same `nodes` as every backend (model/nodes.py)."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

from dstack_iac.backends.ssh.allocation import Placement
from dstack_iac.backends.ssh.config import ResolvedHost
from dstack_iac.backends.ssh.handlers import HOST_TYPE, LEASE_TYPE
from dstack_iac.backends.ssh.hosts import Target
from dstack_iac.backends.ssh.records import FleetRecord

HOST_OUTPUTS = ("host_key", "fingerprint", "jump_host_key", "jump_fingerprint", "inventory", "private_address",
                "block_count")
NODE_KEYS = ("rank", "address", "private_address", "port", "user", "host_key", "working_dir", "directory", "gpus")


def host_target(host: ResolvedHost) -> Target:
    """How the fleet's create reaches a host: no key pinned yet (trust on first use)."""
    jump = None
    if host.proxy_jump is not None:
        jump = Target(label=host.proxy_jump.hostname, hostname=host.proxy_jump.hostname, port=host.proxy_jump.port,
                      user=host.proxy_jump.user, identity_file=host.proxy_jump.identity_file)
    return Target(label=host.label, hostname=host.hostname, port=host.port, user=host.user,
                  identity_file=host.identity_file, jump=jump)


class SshHost(pulumi.CustomResource):
    """One host of a fleet, checked over SSH: its host key (recorded, then pinned) and inventory."""

    host_key: pulumi.Output[str]
    fingerprint: pulumi.Output[str]
    inventory: pulumi.Output[dict]
    private_address: pulumi.Output[str]
    block_count: pulumi.Output[int]

    def __init__(self, name: str, *, fleet: str, host: ResolvedHost, network: str | None,
                 opts: pulumi.ResourceOptions | None = None):
        props = {"fleet": fleet, "target": host_target(host).as_props(), "internal_ip": host.internal_ip,
                 "network": network, "blocks": host.blocks, **{key: None for key in HOST_OUTPUTS}}
        super().__init__(HOST_TYPE, name, props, opts)


class SshFleet(pulumi.ComponentResource):
    """A fleet's hosts; `hosts` lists each host's label, key and inventory, in the file's order."""

    hosts: pulumi.Output[list]

    def __init__(self, name: str, *, fleet: str, hosts: Sequence[ResolvedHost], network: str | None,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("dstack-iac:ssh:Fleet", name, None, opts)
        self.instances = [SshHost(f"host-{index}", fleet=fleet, host=host, network=network,
                                  opts=pulumi.ResourceOptions(parent=self))
                          for index, host in enumerate(hosts)]
        self.hosts = pulumi.Output.all(*[
            pulumi.Output.all(label=host.label, **{key: getattr(resource, key) for key in HOST_OUTPUTS})
            for host, resource in zip(hosts, self.instances)
        ])
        self.register_outputs({"hosts": self.hosts})


class SshHostLease(pulumi.CustomResource):
    """One node of a run: the run's lease on a host (a lock, a run directory, the run's key,
    a watchdog), all removed when the resource is deleted."""

    address: pulumi.Output[str]
    private_address: pulumi.Output[str]
    port: pulumi.Output[int]
    user: pulumi.Output[str]
    host_key: pulumi.Output[str]
    directory: pulumi.Output[str]
    working_dir: pulumi.Output[str]
    gpus: pulumi.Output[int]

    def __init__(self, name: str, *, run_name: str, rank: int, fleet: str, placement: Placement,
                 authorized_key: str, run_dir: str, lease_seconds: int, opts: pulumi.ResourceOptions | None = None):
        host = placement.host
        gpus = placement.gpu_indices
        props = {
            "run_name": run_name, "rank": rank, "fleet": fleet, "target": host.target().as_props(),
            "host": f"{host.user}@{host.hostname}:{host.port}",  # the target, as previews show it
            "locks": host.lock_names(list(placement.blocks)), "blocks": list(placement.blocks),
            # A host split into blocks shows each lease only its own GPUs.
            "gpu_indices": gpus if host.blocks > 1 else [],
            "gpu_vendor": host.inventory.gpus[0].vendor if host.inventory.gpus else None,
            "authorized_key": authorized_key, "lease_seconds": lease_seconds, "run_dir": run_dir,
            "private_address": host.private_address, "gpus": len(gpus),
            "address": None, "port": None, "user": None, "host_key": None, "directory": None, "working_dir": None,
        }
        super().__init__(LEASE_TYPE, name, props, opts)


class SshTaskCluster(pulumi.ComponentResource):
    """A run's nodes on a fleet: one lease per rank, on the hosts planning chose."""

    nodes: pulumi.Output[list]

    def __init__(self, name: str, *, run_name: str, fleet: FleetRecord, placements: Sequence[Placement],
                 authorized_key: str, run_dir: str, lease_seconds: int = 0,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("dstack-iac:ssh:TaskCluster", name, None, opts)
        self.leases = [
            SshHostLease(f"node-{rank}", run_name=run_name, rank=rank, fleet=fleet.name, placement=placement,
                         authorized_key=authorized_key, run_dir=run_dir, lease_seconds=lease_seconds,
                         opts=pulumi.ResourceOptions(parent=self))
            for rank, placement in enumerate(placements)
        ]
        # One per rank, each resolving once its lease is taken: the run connects to a host while
        # the others are still being leased (see ClusterResource).
        self.node_outputs = [
            pulumi.Output.all(rank=rank, **{key: getattr(lease, key) for key in NODE_KEYS if key != "rank"})
            for rank, lease in enumerate(self.leases)
        ]
        self.nodes = pulumi.Output.all(*self.node_outputs)
        self.register_outputs({"nodes": self.nodes})
