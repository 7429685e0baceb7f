"""`volume create|list|delete`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from dstack_iac.cli.output import console, error_console, fail, listing, print_config_error
from dstack_iac.config.errors import ConfigError

volume_app = typer.Typer(help="Network volumes: long-lived stacks that outlive runs.", no_args_is_help=True)

FileOption = Annotated[Optional[Path], typer.Option("-f", "--file", help="Volume configuration (type: volume).")]


def _reporter():
    def on_event(event) -> None:
        outputs = event.res_outputs_event
        if outputs and not outputs.metadata.type.startswith("pulumi:"):
            meta = outputs.metadata
            error_console.print(f"  {meta.op.value} {meta.urn.rsplit('::', 1)[1]} ({meta.type})", style="dim",
                                markup=False)
    return on_event


def _load(file: Optional[Path]):
    from dstack_iac.config.loader import load_volume

    if file is None:
        raise fail("give the volume's configuration with -f FILE.dstack.yml", 2)
    try:
        return load_volume(file)
    except ConfigError as exc:
        print_config_error(exc)
        raise typer.Exit(exc.exit_code) from None


@volume_app.command("create")
def create(file: FileOption = None) -> None:
    """Create (or register, with volume_id) the volume a configuration describes."""
    from dstack_iac.infra.cloud.credentials import MissingCredentials
    from dstack_iac.volumes.lifecycle import VolumeError, create_volume

    volume, path = _load(file)
    started = time.perf_counter()
    error_console.print(f"Creating volume {volume.name} ({volume.backend})...", style="cyan")
    try:
        record = create_volume(volume, str(path), on_event=_reporter())
    except (VolumeError, MissingCredentials) as exc:
        raise fail(f"{exc}\n(nothing was created)", exc.exit_code) from None
    where = record.directory or f"{record.volume_id} in {record.availability_zone}"
    error_console.print(f"Volume {record.name} is ready ({where}) in {time.perf_counter() - started:.1f}s",
                        style="green", markup=False)


@volume_app.command("list")
def list_volumes(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List volumes, with the runs using them."""
    from dstack_iac.volumes import registry
    from dstack_iac.volumes.lifecycle import users_of

    records = registry.all_volumes()
    if as_json:
        sys.stdout.write(json.dumps([{**r.model_dump(mode="json"), "used_by": users_of(r.name)} for r in records],
                                    indent=2) + "\n")
        return
    table = listing("NAME", "BACKEND", "REGION", "ZONE", "SIZE", "VOLUME ID", "USED BY")
    for record in records:
        size = f"{record.size_gb:g}GB" if record.size_gb else "-"
        table.add_row(record.name, record.backend, record.region or "-", record.availability_zone or "-", size,
                      record.volume_id or "-", ", ".join(users_of(record.name)) or "-")
    console.print(table, crop=False)


@volume_app.command("delete")
def delete(
    name: Annotated[Optional[str], typer.Argument(help="Volume name (or give -f FILE).")] = None,
    file: FileOption = None,
    yes: Annotated[bool, typer.Option("-y", "--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a volume and its data (a registered disk is only forgotten). Refused while in use."""
    from dstack_iac.volumes import registry
    from dstack_iac.volumes.lifecycle import VolumeError, delete_volume

    if name is None:
        name = _load(file)[0].name
    record = registry.load(name)
    if record is not None and not yes and sys.stdin.isatty():
        what = "forget the registered disk" if record.registered else "delete the volume and all its data"
        if not typer.confirm(f"{name}: {what}?", default=False):
            raise typer.Exit(1)
    try:
        delete_volume(name, on_event=_reporter())
    except VolumeError as exc:
        raise fail(str(exc), exc.exit_code) from None
    error_console.print(f"Volume {name} deleted.", style="green", markup=False)
