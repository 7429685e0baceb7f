"""Declare a `.dstack.yml`'s infrastructure inside your own Pulumi program.

    import pulumi
    from dstack_iac import task_cluster

    cluster = task_cluster("train", "train.dstack.yml", public_key=open("id.pub").read(),
                           ssh_cidr="203.0.113.0/24")
    pulumi.export("nodes", cluster.nodes)

The same planning as `dstack-iac run` picks the offer (cheapest match in the bundled catalog, or
this machine for `local`); the component is the one runs use. Nothing runs the commands: that
stays with `dstack-iac run`, or with your own tooling over SSH.
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from dstack_iac.config.loader import load_task, load_volume


def task_cluster(name: str, configuration: str | Path, *, public_key: str, ssh_cidr: str | None = None,
                 run_name: str | None = None, user: str | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> pulumi.ComponentResource:
    """The nodes of the task in `configuration`, as Local/Aws/GcpTaskCluster (output `nodes`).
    `ssh_cidr` is required for cloud backends."""
    import getpass

    from dstack_iac.infra.program import cluster_spec
    from dstack_iac.paths import run_dir
    from dstack_iac.runs.plan import plan_run

    path = Path(configuration).resolve()
    task = load_task(path.parent, path)
    plan = plan_run(task, run_name or task.configuration.name or name)
    if plan.backend == "local":
        from dstack_iac.infra.local.cluster import LocalTaskCluster

        return LocalTaskCluster(name, run_name=plan.run_name, nodes=plan.nodes, user=user or getpass.getuser(),
                                authorized_key=public_key, nodes_dir=str(run_dir(plan.run_name) / "nodes"), opts=opts)
    if not ssh_cidr:
        raise ValueError(f"{plan.backend} nodes need ssh_cidr: the address range allowed to reach them over SSH")
    spec = cluster_spec(plan, public_key, [], ssh_cidr)
    if plan.backend == "aws":
        from dstack_iac.infra.aws import AwsTaskCluster

        return AwsTaskCluster(name, spec, opts=opts)
    from dstack_iac.infra.gcp import GcpTaskCluster

    return GcpTaskCluster(name, spec, opts=opts)


def volume(configuration: str | Path) -> None:
    """Declare the volume in a `type: volume` file (exports volume_id and availability_zone)."""
    from dstack_iac.infra.volume_program import volume_program

    spec, _ = load_volume(Path(configuration))
    volume_program(spec)()
