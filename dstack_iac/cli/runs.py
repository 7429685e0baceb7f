"""`run`, `preview`, `ps`, `logs` and `stop`."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from dstack_iac.cli.options import RUN_CONTEXT, task_options
from dstack_iac.cli.output import console, error_console, fail, listing, print_config_error
from dstack_iac.config.errors import ConfigError
from dstack_iac.config.loader import Overrides, Task, load_task

RepoDir = Annotated[Path, typer.Argument(help="Working directory uploaded to the nodes.")]
NO_PROVISION = "nothing was provisioned"


def _load(repo_dir: Path, file: Path | None, overrides: Overrides, run_args: list[str]) -> Task:
    try:
        return load_task(repo_dir, file, overrides, run_args)
    except ConfigError as exc:
        print_config_error(exc)
        raise typer.Exit(exc.exit_code) from None


def _plan(task: Task, run_name: str | None = None):
    from dstack_iac.execution.interpreters import InterpreterNotFound
    from dstack_iac.offers.models import NoOfferError
    from dstack_iac.runs import registry
    from dstack_iac.runs.names import generate_run_name
    from dstack_iac.runs.mounts import VolumeNotAvailable
    from dstack_iac.runs.plan import plan_run

    name = run_name or task.configuration.name or generate_run_name(registry.active_names())
    try:
        return plan_run(task, name)
    except (NoOfferError, InterpreterNotFound, VolumeNotAvailable) as exc:
        raise fail(f"{exc}\n({NO_PROVISION})", exc.exit_code) from None


def _require_cloud_access(plan) -> None:
    """Cloud runs need credentials: checked before any resource is declared."""
    if plan.backend == "local":
        return
    from dstack_iac.infra.cloud.credentials import MissingCredentials, require_credentials

    try:
        source = require_credentials(plan.backend)
    except MissingCredentials as exc:
        raise fail(f"{exc}\n({NO_PROVISION})", exc.exit_code) from None
    error_console.print(f"{plan.backend.upper()} credentials: {source}", style="dim")


def plan_table(plan) -> Table:
    columns = ["RUN", "CONFIGURATION", "BACKEND", "REGION", "INSTANCE", "RESOURCES", "SPOT", "PRICE"]
    if plan.nodes > 1:
        columns.insert(3, "NODES")
    table = listing(*columns)
    price = f"${plan.offer.price:g}" + (f" (x{plan.nodes} = ${plan.total_price:g})" if plan.nodes > 1 else "")
    row = [plan.run_name, plan.configuration_path, plan.backend, plan.offer.region, plan.offer.instance_type,
           plan.offer.resources_summary(), "yes" if plan.offer.spot else "no", price]
    if plan.nodes > 1:
        row.insert(3, str(plan.nodes))
    table.add_row(*row)
    return table


def register(app: typer.Typer) -> None:
    @app.command(context_settings=RUN_CONTEXT)
    @task_options
    def run(
        ctx: typer.Context,
        repo_dir: RepoDir = Path("."),
        yes: Annotated[bool, typer.Option("-y", "--yes", help="Do not ask for confirmation.")] = False,
        *,
        file: Optional[Path],
        overrides: Overrides,
        run_args: list[str],
    ) -> None:
        """Run a task: provision its nodes as a Pulumi stack, run the commands, tear everything down."""
        from dstack_iac.execution.workdir import UploadTooLarge, pack_working_dir
        from dstack_iac.runs.lifecycle import RunNameTaken, RunUI, execute_run

        started = time.perf_counter()
        task = _load(repo_dir, file, overrides, run_args)
        plan = _plan(task)
        console.print(plan_table(plan), crop=False)
        console.print()
        _require_cloud_access(plan)
        try:
            archive = pack_working_dir(plan.repo_dir)
        except UploadTooLarge as exc:
            raise fail(f"{exc} ({NO_PROVISION})", exc.exit_code) from None
        plan_seconds = time.perf_counter() - started
        if not yes and sys.stdin.isatty() and not typer.confirm("Continue?", default=True):
            raise typer.Exit(1)
        ui = RunUI(
            say=lambda m: error_console.print(m, style="cyan", markup=False, soft_wrap=True),
            warn=lambda m: error_console.print(m, style="yellow", markup=False, soft_wrap=True),
            line=lambda text: (sys.stdout.write(text + "\n"), sys.stdout.flush()),
            resource=lambda m: error_console.print(f"  {m}", style="dim", markup=False),
        )
        try:
            result = execute_run(plan, ui, archive)
        except RunNameTaken as exc:
            raise fail(f"{exc} ({NO_PROVISION})", exc.exit_code) from None
        result.phases["plan"] = plan_seconds
        _save_phases(plan.run_name, result.phases)
        verdict = "succeeded" if result.exit_code == 0 else f"failed with exit code {result.exit_code}"
        style = "green" if result.exit_code == 0 else "red"
        error_console.print(f"Run {plan.run_name} {verdict}", style=style)
        raise typer.Exit(result.exit_code)

    @app.command(context_settings=RUN_CONTEXT)
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

        task = _load(repo_dir, file, overrides, run_args)
        plan = _plan(task, run_name=task.configuration.name or "preview")
        console.print(plan_table(plan), crop=False)
        console.print()
        _require_cloud_access(plan)
        changes = preview_run(plan)
        table = Table("OP", "RESOURCE", "TYPE", "PROPERTIES", box=None, pad_edge=False)
        for change in changes:
            table.add_row(change.op, change.name, change.type, change.properties)
        console.print(table)
        console.print(f"{len(changes)} to create; nothing was created.")

    @app.command()
    def ps(
        show_all: Annotated[bool, typer.Option("-a", "--all", help="Include finished runs.")] = False,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """List runs (active ones; --all for finished too)."""
        from dstack_iac.runs import registry

        records = [r for r in registry.all_runs() if show_all or r.effective_status.active]
        if as_json:
            sys.stdout.write(json.dumps([
                {**json.loads(r.model_dump_json()), "status": r.effective_status.value} for r in records
            ], indent=2) + "\n")
            return
        table = listing("NAME", "STATUS", "BACKEND", "NODES", "AGE", "EXIT")
        for record in records:
            status = record.effective_status
            shown = status.value + (f" (clean up: dstack-iac stop {record.name})" if status.value == "orphaned" else "")
            table.add_row(record.name, shown, record.backend, str(record.nodes), _age(record.created_at),
                          "" if record.exit_code is None else str(record.exit_code))
        console.print(table)

    @app.command()
    def logs(
        run_name: Annotated[str, typer.Argument(metavar="RUN")],
        follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing while the run is active.")] = False,
    ) -> None:
        """Print a run's output."""
        from dstack_iac.runs import registry

        record = registry.load(run_name)
        if record is None:
            raise fail(f"no run named {run_name!r} (see `dstack-iac ps --all`)", 1)
        position = 0
        while True:
            if record.log_path.exists():
                with open(record.log_path) as handle:
                    handle.seek(position)
                    chunk = handle.read()
                    position = handle.tell()
                sys.stdout.write(chunk)
                sys.stdout.flush()
            if not follow:
                return
            record = registry.load(run_name) or record
            if not record.effective_status.active:
                if record.log_path.exists() and record.log_path.stat().st_size > position:
                    continue
                return
            time.sleep(0.2)

    @app.command()
    def stop(
        run_name: Annotated[str, typer.Argument(metavar="RUN")],
        timeout: Annotated[float, typer.Option(help="Seconds to wait for the run's own teardown.")] = 300,
    ) -> None:
        """Stop a run from another terminal: stop its commands and destroy its stack."""
        from dstack_iac.infra.local.processes import alive
        from dstack_iac.runs import registry
        from dstack_iac.runs.stop import clean_up_run

        record = registry.load(run_name)
        if record is None:
            raise fail(f"no run named {run_name!r} (see `dstack-iac ps --all`)", 1)
        if record.effective_status.active and record.status.value != "orphaned" and alive(record.owner_pid):
            # The attached CLI owns the stack: ask it to tear down, as Ctrl+C would.
            os.kill(record.owner_pid, signal.SIGTERM)
            error_console.print(f"Asked the CLI of {run_name} (pid {record.owner_pid}) to stop; waiting for teardown...")
            deadline = time.monotonic() + timeout
            while alive(record.owner_pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            record = registry.load(run_name) or record
            if not record.effective_status.active:
                error_console.print(f"Stopped {run_name}: its stack is destroyed.", style="green")
                return
        clean_up_run(run_name, say=lambda m: error_console.print(m, markup=False))
        error_console.print(f"Stopped {run_name}: its stack is destroyed.", style="green")


def _age(created_at: float) -> str:
    seconds = int(time.time() - created_at)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _save_phases(run_name: str, phases: dict) -> None:
    from dstack_iac.paths import run_dir

    path = run_dir(run_name) / "phases.json"
    if path.parent.exists():
        path.write_text(json.dumps(phases))
