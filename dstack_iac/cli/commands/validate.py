"""`validate`: a configuration, normalised (defaults filled, secrets masked), or its errors."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dstack_iac.cli.options import AsJson, RepoDir, task_options
from dstack_iac.cli.output import console, print_json
from dstack_iac.config.errors import ConfigError
from dstack_iac.config.loader import Overrides, load_task


@task_options
def validate(
    ctx: typer.Context,
    repo_dir: RepoDir = Path("."),
    as_json: AsJson = False,
    *,
    file: Optional[Path],
    overrides: Overrides,
    run_args: list[str],
) -> None:
    """Validate a configuration and print it normalised (defaults filled, secrets masked)."""
    try:
        task = load_task(repo_dir, file, overrides, run_args)
    except ConfigError as exc:
        if not as_json:
            raise
        print_json({"valid": False, "errors": [issue.as_dict() for issue in exc.issues]})
        raise typer.Exit(int(exc.exit_status)) from None
    data = task.configuration.model_dump(mode="json")
    data["commands"] = task.display_commands(task.configuration.commands)
    data["build"] = task.display_commands(task.configuration.build)
    if as_json:
        print_json({"valid": True, "file": task.display_path, "configuration": data})
        return
    import yaml

    profile = f" (profile {task.profile_name})" if task.profile_name else ""
    console.print("[green]valid[/]: ", end="")
    console.print(f"{task.display_path}{profile}", markup=False)
    console.print(f"resources: {task.configuration.resources.summary()}", markup=False)
    console.print(yaml.safe_dump(data, sort_keys=False).rstrip(), markup=False, highlight=False)
