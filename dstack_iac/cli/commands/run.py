"""`run`: plan, provision, run the commands on every node, tear everything down."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from dstack_iac.cli.commands.planning import NOTHING_PROVISIONED, load_and_plan, nothing_provisioned
from dstack_iac.cli.options import PolicyPackConfigs, PolicyPacks, RepoDir, Yes, confirm, task_options
from dstack_iac.cli.output import error_console

if TYPE_CHECKING:
    from dstack_iac.config.loader import Overrides


@task_options
def run(
    ctx: typer.Context,
    repo_dir: RepoDir = Path("."),
    yes: Yes = False,
    lease: Annotated[Optional[str], typer.Option(
        "--lease", help="End the nodes when this process has not renewed their lease for this long "
                        "(e.g. 10m; default $DSTACK_IAC_LEASE_SECONDS or 600s).")] = None,
    detach: Annotated[bool, typer.Option(
        "-d", "--detach", help="Hand the run to a background supervisor and return (see `attach`).")] = False,
    reload: Annotated[bool, typer.Option(
        "--reload", help="Sync every change of the working directory to the nodes while attached.")] = False,
    force_build: Annotated[bool, typer.Option(
        "--force-build", help="With --build: run the build commands even when their result is kept.")] = False,
    plan_file: Annotated[Optional[Path], typer.Option(
        "--plan", metavar="FILE", help="Apply exactly the plan `preview --save-plan FILE` saved: refused, before "
                                       "anything is created, if the configuration, offer or resources differ.")] = None,
    policy_pack: PolicyPacks = [],
    policy_pack_config: PolicyPackConfigs = [],
    *,
    file: Optional[Path],
    overrides: Overrides,
    run_args: list[str],
) -> None:
    """Run a task: provision its nodes as a Pulumi stack, run the commands, tear everything down."""
    from dstack_iac.execution.workdir import pack_working_dir
    from dstack_iac.runs.lifecycle import execute_run
    from dstack_iac.state.runs import RunNameTaken
    from dstack_iac.runs.log import RunUI

    started = time.perf_counter()
    from dstack_iac.runs.modes import check_modes, check_plan, run_hooks, start_in_background

    with nothing_provisioned():
        check_modes(detach=detach, reload=reload)
        from dstack_iac.runs.review import Guardrails, review_run

        guardrails = Guardrails.from_flags(policy_pack, policy_pack_config, plan_file)
    reviewed_name = guardrails.reviewed["run_name"] if guardrails.reviewed else None
    _task, plan, backend = load_and_plan(repo_dir, file, overrides, run_args, lease=lease, default_name=reviewed_name)
    if force_build:
        plan = plan.model_copy(update={"build": True, "force_build": True})
    if guardrails.packs:
        from dstack_iac.infra.policy import plan_entries

        plan = plan.model_copy(update={"policy_packs": plan_entries(guardrails.packs)})
    with nothing_provisioned():
        check_plan(plan, reload=reload)
        archive = pack_working_dir(plan.repo_dir)
        if guardrails.active:  # policies and the reviewed plan decide before anything exists
            review_run(plan, backend, guardrails, on_finding=lambda m: error_console.print(m, markup=False))
            if guardrails.reviewed is not None:
                error_console.print(f"The plan is the reviewed one ({plan_file}).", style="green", markup=False)
    plan_seconds = time.perf_counter() - started
    if not confirm("Continue?", yes):
        raise typer.Exit(1)
    if detach or plan.configuration.schedule:
        with nothing_provisioned():
            start_in_background(plan, archive, say=lambda m: error_console.print(m, markup=False, soft_wrap=True))
        raise typer.Exit(0)
    ui = RunUI(
        say=lambda m: error_console.print(m, style="cyan", markup=False, soft_wrap=True),
        warn=lambda m: error_console.print(m, style="yellow", markup=False, soft_wrap=True),
        line=lambda text: (sys.stdout.write(text + "\n"), sys.stdout.flush()),
        resource=lambda m: error_console.print(f"  {m}", style="dim", markup=False),
    )
    try:
        result = execute_run(plan, ui, archive, backend=backend, hooks=run_hooks(plan, backend, reload=reload))
    except RunNameTaken as exc:  # refused before anything was created
        exc.hint = NOTHING_PROVISIONED
        raise
    result.phases["plan"] = plan_seconds
    _save_phases(plan.run_name, result.phases)
    verdict = "succeeded" if result.exit_code == 0 else f"failed with exit code {result.exit_code}"
    error_console.print(f"Run {plan.run_name} {verdict}", style="green" if result.exit_code == 0 else "red")
    raise typer.Exit(result.exit_code)


def _save_phases(run_name: str, phases: dict) -> None:
    from dstack_iac.paths import run_dir, write_private

    if run_dir(run_name).exists():
        write_private(run_dir(run_name) / "phases.json", json.dumps(phases))
