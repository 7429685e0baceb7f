"""`run`: plan, provision, run the commands on every node, tear everything down."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from dstack_iac.cli.commands.planning import NOTHING_PROVISIONED, load_and_plan, nothing_provisioned
from dstack_iac.cli.options import RepoDir, Yes, confirm, task_options
from dstack_iac.cli.output import error_console
from dstack_iac.config.loader import Overrides


@task_options
def run(
    ctx: typer.Context,
    repo_dir: RepoDir = Path("."),
    yes: Yes = False,
    lease: Annotated[Optional[str], typer.Option(
        "--lease", help="End the nodes when this process has not renewed their lease for this long "
                        "(e.g. 10m; default $DSTACK_IAC_LEASE_SECONDS or 600s).")] = None,
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
    _task, plan, backend = load_and_plan(repo_dir, file, overrides, run_args, lease=lease)
    with nothing_provisioned():
        archive = pack_working_dir(plan.repo_dir)
    plan_seconds = time.perf_counter() - started
    if not confirm("Continue?", yes):
        raise typer.Exit(1)
    ui = RunUI(
        say=lambda m: error_console.print(m, style="cyan", markup=False, soft_wrap=True),
        warn=lambda m: error_console.print(m, style="yellow", markup=False, soft_wrap=True),
        line=lambda text: (sys.stdout.write(text + "\n"), sys.stdout.flush()),
        resource=lambda m: error_console.print(f"  {m}", style="dim", markup=False),
    )
    try:
        result = execute_run(plan, ui, archive, backend=backend)
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
