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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dstack_iac.backends.registry import get_backend
from dstack_iac.config.loader import load_task, load_volume
from dstack_iac.infra.program import volume_program
from dstack_iac.model.plan import RunInputs
from dstack_iac.paths import run_dir
from dstack_iac.runs.planning import plan_task


def task_cluster(name: str, configuration: str | Path, *, public_key: str, ssh_cidr: str | None = None,
                 run_name: str | None = None, user: str | None = None, tags: Mapping[str, str] | None = None,
                 declare_offer: bool = True, reviewed_plan: str | Path | None = None) -> Any:
    """The nodes of the task in `configuration`, as its backend's cluster component (output
    `nodes`). `ssh_cidr` is required for cloud backends. `name` prefixes every resource's name
    (`{name}-node-0`, `{name}-sg`, ...); `run_name` is the run's name in the `dstack-iac:run`
    tag; `tags` are added to the task's own `tags` on every cloud resource (a team's cost
    centre, ...). With `declare_offer`, the chosen offer is a component of the stack too
    (`{name}-offer`, type dstack-iac:run:Offer), as in a run's stack: the same policy packs see
    its price, nodes and instance type. `reviewed_plan`: a plan saved by `dstack-iac preview
    --save-plan`; the program refuses (PlanMismatch, before declaring anything) when the
    configuration, the offer or the nodes differ from it."""
    path = Path(configuration).resolve()
    task = load_task(path.parent, path)
    plan = plan_task(task, run_name or task.configuration.name or name)
    if tags:
        from dstack_iac.config.run_policies import check_tags

        merged = check_tags({**(plan.configuration.tags or {}), **dict(tags)})  # the task's own rules for tags
        plan = plan.model_copy(update={"configuration": plan.configuration.model_copy(update={"tags": merged})})
    if reviewed_plan is not None:
        _check_reviewed(plan, Path(reviewed_plan))
    backend = get_backend(plan.backend)
    inputs = RunInputs(run_name=plan.run_name, run_dir=str(run_dir(plan.run_name)), public_key=public_key,
                       key_path="", user=user or backend.node_user(), ssh_cidr=ssh_cidr)
    if declare_offer:
        from dstack_iac.infra.offer_resource import declare_offer as offer_component

        offer_component(f"{name}-offer", plan.offer, plan.nodes, rented=backend.catalog is not None)
    return backend.declare_cluster(name, plan, inputs)


def _check_reviewed(plan: Any, path: Path) -> None:
    """The program's plan against the reviewed one: configuration, offer and nodes. The run name
    is the program's own, and its resources are what the engine's preview shows (a program
    cannot see them before declaring them)."""
    from dstack_iac.infra.reviewed_plan import PlanMismatch, differences, load_plan, plan_document

    saved = load_plan(path)
    current = plan_document(plan, [])
    found = differences({**saved, "run_name": current["run_name"], "resources": []}, current)
    if found:
        raise PlanMismatch(path, found)


def volume(configuration: str | Path) -> None:
    """Declare the volume in a `type: volume` file (exports source, volume_id and availability_zone)."""
    loaded = load_volume(Path(configuration))
    volume_program(loaded.configuration, get_backend(loaded.configuration.backend))()
