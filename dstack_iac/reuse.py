"""Declare a `.dstack.yml`'s infrastructure inside your own Pulumi program.

    import pulumi
    from dstack_iac import task_cluster

    cluster = task_cluster("train", "train.dstack.yml", public_key=open("id.pub").read(),
                           ssh_cidr="203.0.113.0/24")
    pulumi.export("nodes", cluster.nodes)

The same planning as `dstack-iac run` picks the backend and the offer (cheapest match in the
bundled catalog, or this machine for `local`); the component is the one runs use. Nothing runs
the commands: that stays with `dstack-iac run`, or with your own tooling over SSH.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dstack_iac.backends.registry import get_backend
from dstack_iac.config.loader import load_task, load_volume
from dstack_iac.infra.program import volume_program
from dstack_iac.model.plan import RunInputs
from dstack_iac.paths import run_dir
from dstack_iac.runs.planning import plan_task


def task_cluster(name: str, configuration: str | Path, *, public_key: str, ssh_cidr: str | None = None,
                 run_name: str | None = None, user: str | None = None) -> Any:
    """The nodes of the task in `configuration`, as its backend's cluster component (output
    `nodes`). `ssh_cidr` is required for cloud backends."""
    path = Path(configuration).resolve()
    task = load_task(path.parent, path)
    plan = plan_task(task, run_name or task.configuration.name or name)
    backend = get_backend(plan.backend)
    inputs = RunInputs(run_name=plan.run_name, run_dir=str(run_dir(plan.run_name)), public_key=public_key,
                       key_path="", user=user or backend.node_user(), ssh_cidr=ssh_cidr)
    return backend.declare_cluster(name, plan, inputs)


def volume(configuration: str | Path) -> None:
    """Declare the volume in a `type: volume` file (exports source, volume_id and availability_zone)."""
    loaded = load_volume(Path(configuration))
    volume_program(loaded.configuration, get_backend(loaded.configuration.backend))()
