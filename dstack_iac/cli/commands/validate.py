"""`validate`: a configuration, normalised (defaults filled, secrets masked), or its errors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from dstack_iac.cli.options import AsJson, RepoDir, task_options
from dstack_iac.cli.output import console, error_console, print_json
from dstack_iac.config.errors import ConfigError

if TYPE_CHECKING:
    from dstack_iac.config.loader import Overrides


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
    from dstack_iac.config.loader import load_task

    other = _other_type(file)
    if other is not None:
        _validate_other(file, *other, as_json=as_json)
        return
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
    for group in data.get("groups") or []:
        group["commands"] = task.display_commands(group["commands"])
    for warning in task.warnings:
        error_console.print(f"warning: {warning}", markup=False, highlight=False)
    if as_json:
        print_json({"valid": True, "file": task.display_path, "configuration": data})
        return
    import yaml

    profile = f" (profile {task.profile_name})" if task.profile_name else ""
    console.print("[green]valid[/]: ", end="")
    console.print(f"{task.display_path}{profile}", markup=False)
    console.print(f"resources: {task.configuration.resources.summary()}", markup=False)
    console.print(yaml.safe_dump(data, sort_keys=False).rstrip(), markup=False, highlight=False)


def _other_type(file: Optional[Path]):
    """(kind, model) when `file` is a volume or a type a backend brings (a fleet), else None."""
    from dstack_iac.backends.registry import configuration_types
    from dstack_iac.config.loader import peek_type
    from dstack_iac.config.models import VolumeConfiguration

    if file is None:
        return None
    try:
        kind = peek_type(file)
    except ConfigError:
        return None  # the task loader reports it, with its positions
    models = {"volume": VolumeConfiguration, **configuration_types()}
    return (kind, models[kind]) if kind in models else None


def _validate_other(file: Path, kind: str, model, as_json: bool) -> None:
    from dstack_iac.config.loader import load_file_of_type

    try:
        loaded = load_file_of_type(file, kind, model)
    except ConfigError as exc:
        if not as_json:
            raise
        print_json({"valid": False, "errors": [issue.as_dict() for issue in exc.issues]})
        raise typer.Exit(int(exc.exit_status)) from None
    data = loaded.configuration.model_dump(mode="json")
    if as_json:
        print_json({"valid": True, "file": str(file), "configuration": data})
        return
    import yaml

    console.print("[green]valid[/]: ", end="")
    console.print(f"{file} (type: {kind})", markup=False)
    console.print(yaml.safe_dump(data, sort_keys=False).rstrip(), markup=False, highlight=False)
