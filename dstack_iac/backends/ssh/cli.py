"""`dstack-iac fleet create|list|delete`: the ssh backend's command group (mounted by the CLI from
the registry). Errors are raised as DstackIacError and reported by the CLI's one handler; output
goes through rich directly (backends do not import the CLI package)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from dstack_iac.errors import BadInput

fleet_app = typer.Typer(help="SSH fleets: machines you already have, as long-lived stacks.", no_args_is_help=True)

# Piped output (CI, logs, tests) is not cut at 80 columns, as elsewhere in the CLI.
_out = Console(highlight=False, width=None if sys.stdout.isatty() else 240)
_err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 240)

FleetFile = Annotated[Optional[Path], typer.Option("-f", "--file", help="Fleet configuration (type: fleet).")]
Yes = Annotated[bool, typer.Option("-y", "--yes", help="Do not ask for confirmation.")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _say(message: str, style: str = "cyan") -> None:
    _err.print(message, style=style, markup=False, soft_wrap=True, highlight=False)


def _confirm(question: str, yes: bool, default: bool = True) -> bool:
    if yes or not sys.stdin.isatty():
        return True
    return typer.confirm(question, default=default)


def _load(file: Optional[Path]):
    from dstack_iac.backends.ssh.config import FleetConfiguration
    from dstack_iac.backends.ssh.fleet import check_hosts
    from dstack_iac.config.loader import load_file_of_type

    if file is None:
        raise BadInput("give the fleet's configuration with -f FILE.dstack.yml")
    loaded = load_file_of_type(file, "fleet", FleetConfiguration)
    loaded.reject(check_hosts(loaded.configuration, loaded.path.parent))
    return loaded


@fleet_app.command("create")
def create(file: FleetFile = None, yes: Yes = False) -> None:
    """Create a fleet: check every host over SSH, record its host key and what it has."""
    from dstack_iac.backends.ssh.fleet import create_fleet
    from dstack_iac.paths import require_usable_state_dir

    loaded = _load(file)
    fleet = loaded.configuration
    if fleet.resources is not None:
        _say("resources is ignored for SSH fleets: what each host has is measured", style="yellow")
    hosts = len(fleet.ssh_config.hosts)
    if not _confirm(f"Create fleet {fleet.name} ({hosts} host{'s' if hosts > 1 else ''})?", yes):
        raise typer.Exit(1)
    require_usable_state_dir()
    started = time.perf_counter()
    _say(f"Creating fleet {fleet.name}: connecting to {hosts} host{'s' if hosts > 1 else ''}...")
    record = create_fleet(fleet, loaded.path, say=lambda line: _say(f"  {line}", style="dim"))
    for host in record.hosts:
        # Trust on first use: the key is pinned from now on; the user can compare the fingerprint.
        _say(f"{host.label}: host key {host.fingerprint} recorded (trusted on first use, pinned from now on); "
             f"{host.inventory.summary()}, {host.inventory.os}", style="default")
    _say(f"Fleet {record.name} is ready in {time.perf_counter() - started:.1f}s", style="green")


def _users(name: str) -> dict[str, list[str]]:
    from dstack_iac.backends.ssh import records

    return {label: sorted({f"{lease.run}" for lease in leases}) for label, leases in records.users(name).items()}


@fleet_app.command("list")
def list_fleets(as_json: AsJson = False) -> None:
    """List fleets: their hosts, what each has, and which runs use them."""
    from dstack_iac.backends.ssh import records

    fleets = records.all_fleets()
    if as_json:
        data = []
        for fleet in fleets:
            users = _users(fleet.name)
            item = fleet.model_dump(mode="json", exclude={"env"})
            item["env"] = sorted(fleet.env)  # names only: values may be secrets
            for host in item["hosts"]:
                host["used_by"] = users.get(host["label"], [])
            data.append(item)
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("FLEET", "HOST", "ADDRESS", "RESOURCES", "BLOCKS", "USED BY"):
        table.add_column(column, no_wrap=True)
    for fleet in fleets:
        users = _users(fleet.name)
        for index, host in enumerate(fleet.hosts):
            table.add_row(fleet.name if index == 0 else "", host.label, f"{host.user}@{host.hostname}:{host.port}",
                          host.inventory.summary(), str(host.blocks), ", ".join(users.get(host.label, [])) or "-")
    _out.print(table, crop=False)


@fleet_app.command("delete")
def delete(
    name: Annotated[Optional[str], typer.Argument(help="Fleet name (or give -f FILE).")] = None,
    file: FleetFile = None,
    yes: Yes = False,
) -> None:
    """Delete a fleet (its stack and record; nothing on the hosts). Refused while a run uses it."""
    from dstack_iac.backends.ssh.fleet import delete_fleet
    from dstack_iac.config.loader import load_file_of_type

    if name is None:
        if file is None:
            raise BadInput("give the fleet's name, or its configuration with -f FILE.dstack.yml")
        from dstack_iac.backends.ssh.config import FleetConfiguration

        name = load_file_of_type(file, "fleet", FleetConfiguration).configuration.name
    if not _confirm(f"Delete fleet {name}?", yes, default=False):
        raise typer.Exit(1)
    record = delete_fleet(name, say=lambda line: _say(f"  {line}", style="dim"))
    _say(f"Fleet {name} deleted." if record is not None else f"Fleet {name}: its leftover stack was removed.",
         style="green")
