"""`volume create|list|delete`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from dstack_iac.cli.options import AsJson, Yes, confirm
from dstack_iac.cli.output import console, error_console, note, print_json
from dstack_iac.cli.tables import volumes_table
from dstack_iac.errors import BadInput

volume_app = typer.Typer(help="Network volumes: long-lived stacks that outlive runs.", no_args_is_help=True)

VolumeFile = Annotated[Optional[Path], typer.Option("-f", "--file", help="Volume configuration (type: volume).")]


def _load(file: Optional[Path]):
    from dstack_iac.backends.registry import get_backend
    from dstack_iac.config.loader import load_volume

    if file is None:
        raise BadInput("give the volume's configuration with -f FILE.dstack.yml")
    loaded = load_volume(file)
    loaded.reject(get_backend(loaded.configuration.backend).check_volume(loaded.configuration))
    return loaded


def _progress():
    from dstack_iac.infra.events import StackProgress

    return StackProgress(lambda line: note(f"  {line}"))


@volume_app.command("create")
def create(file: VolumeFile = None, yes: Yes = False) -> None:
    """Create (or register, with volume_id) the volume a configuration describes."""
    from dstack_iac.volumes.lifecycle import create_volume

    loaded = _load(file)
    volume = loaded.configuration
    if not confirm(f"Create volume {volume.name} ({volume.backend})?", yes):
        raise typer.Exit(1)
    started = time.perf_counter()
    error_console.print(f"Creating volume {volume.name} ({volume.backend})...", style="cyan", markup=False)
    record = create_volume(volume, str(loaded.path), on_event=_progress())
    where = record.directory or f"{record.volume_id} in {record.availability_zone}"
    error_console.print(f"Volume {record.name} is ready ({where}) in {time.perf_counter() - started:.1f}s",
                        style="green", markup=False)


@volume_app.command("list")
def list_volumes(as_json: AsJson = False) -> None:
    """List volumes (of everyone sharing the Pulumi backend), with the runs using them."""
    from dstack_iac.errors import DstackIacError
    from dstack_iac.state import volumes
    from dstack_iac.volumes.lifecycle import users_of

    records = volumes.all_volumes()
    try:
        known = {record.name for record in records}
        records += [record for record, _owner, _host in volumes.shared_volumes() if record.name not in known]
    except DstackIacError as exc:
        note(f"The Pulumi backend cannot be read ({exc.message}): showing this machine's volumes only")
    if as_json:
        print_json([{**r.model_dump(mode="json"), "used_by": users_of(r.name)} for r in records])
        return
    console.print(volumes_table(records, users_of), crop=False)


@volume_app.command("delete")
def delete(
    name: Annotated[Optional[str], typer.Argument(help="Volume name (or give -f FILE).")] = None,
    file: VolumeFile = None,
    yes: Yes = False,
) -> None:
    """Delete a volume and its data (a registered disk is only forgotten). Refused while in use."""
    from dstack_iac.state import volumes
    from dstack_iac.volumes.lifecycle import delete_volume

    if name is None:
        name = _load(file).configuration.name
    record = volumes.load(name)
    if record is not None:
        what = "forget the registered disk" if record.registered else "delete the volume and all its data"
        if not confirm(f"{name}: {what}?", yes, default=False):
            raise typer.Exit(1)
    delete_volume(name, on_event=_progress())
    error_console.print(f"Volume {name} deleted.", style="green", markup=False)
