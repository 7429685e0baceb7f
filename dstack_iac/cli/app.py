"""The `dstack-iac` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dstack_iac.cli.options import RUN_CONTEXT, task_options
from dstack_iac.cli.output import console, print_config_error
from dstack_iac.config.errors import ConfigError
from dstack_iac.config.loader import Overrides, load_task

app = typer.Typer(
    name="dstack-iac",
    help="Run dstack tasks as ephemeral Pulumi stacks: plan, provision, run over SSH, tear down.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RepoDir = Annotated[Path, typer.Argument(help="Working directory uploaded to the nodes.", show_default=True)]


@app.command()
def doctor(brief: Annotated[bool, typer.Option("--brief", help="One line.")] = False) -> None:
    """Check that a local run can work on this machine."""
    from rich.table import Table

    from dstack_iac.doctor import run_checks

    checks = run_checks()
    ok = all(check.ok for check in checks)
    if brief:
        console.print("doctor: " + ("OK" if ok else "problems: " + ", ".join(c.name for c in checks if not c.ok)))
    else:
        table = Table("CHECK", "STATUS", "DETAIL", box=None)
        for check in checks:
            status = "[dim]INFO[/]" if check.info else "[green]OK[/]" if check.ok else "[red]FIX[/]"
            detail = check.detail if check.ok else f"{check.detail}\n[yellow]{check.fix}[/]"
            table.add_row(check.name, status, detail)
        console.print(table)
    raise typer.Exit(0 if ok else 1)


@app.command(context_settings=RUN_CONTEXT)
@task_options
def validate(
    ctx: typer.Context,
    repo_dir: RepoDir = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    *,
    file: Optional[Path],
    overrides: Overrides,
    run_args: list[str],
) -> None:
    """Validate a configuration and print it normalised (defaults filled, secrets masked)."""
    try:
        task = load_task(repo_dir, file, overrides, run_args)
    except ConfigError as exc:
        if as_json:
            console.print_json(json.dumps({"valid": False, "errors": [i.as_dict() for i in exc.issues]}))
        else:
            print_config_error(exc)
        raise typer.Exit(exc.exit_code) from None
    data = task.configuration.model_dump(mode="json")
    if as_json:
        console.print_json(json.dumps({"valid": True, "file": task.display_path, "configuration": data}))
        return
    import yaml

    console.print(f"[green]valid[/]: {task.display_path}" + (f" (profile {task.profile_name})" if task.profile_name else ""))
    console.print(f"resources: {task.configuration.resources.summary()}")
    console.print(yaml.safe_dump(data, sort_keys=False).rstrip(), markup=False, highlight=False)


@app.command()
def schema() -> None:
    """Print the JSON Schema of .dstack.yml files, tasks and volumes (for editors)."""
    from dstack_iac.config.schema import configuration_json_schema

    sys.stdout.write(json.dumps(configuration_json_schema(), indent=2) + "\n")


from dstack_iac.cli import offers as _offers  # noqa: E402
from dstack_iac.cli import runs as _runs  # noqa: E402 - registers run, preview, ps, logs, stop

from dstack_iac.cli.volumes import volume_app  # noqa: E402

_runs.register(app)
_offers.register(app)
app.add_typer(volume_app, name="volume")


def main() -> None:
    app()
