"""`preview`: the infrastructure a run would create (a real Pulumi preview); nothing is created."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import typer

from dstack_iac.cli.commands.planning import load_and_plan
from dstack_iac.cli.options import RepoDir, task_options
from dstack_iac.cli.output import console
from dstack_iac.cli.tables import planned_changes_table
from dstack_iac.config.loader import Overrides


@task_options
def preview(
    ctx: typer.Context,
    repo_dir: RepoDir = Path("."),
    *,
    file: Optional[Path],
    overrides: Overrides,
    run_args: list[str],
) -> None:
    """Show the infrastructure a run would create (a real Pulumi preview); nothing is created."""
    from dstack_iac.infra.preview import preview_run

    _task, plan, backend = load_and_plan(repo_dir, file, overrides, run_args, default_name="preview")
    with tempfile.TemporaryDirectory(prefix="dstack-iac-preview-") as scratch:
        inputs = backend.prepare(plan, Path(scratch), preview=True)
        changes = preview_run(plan, backend, inputs)
    console.print(planned_changes_table(changes, backend.hidden_inputs), crop=False)
    console.print(f"{len(changes)} to create; nothing was created.")
