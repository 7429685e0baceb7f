"""`stop`: stop a run from another terminal, or clean up one whose owner is gone."""

from __future__ import annotations

from typing import Annotated

import typer

from dstack_iac.cli.options import RunName, Yes
from dstack_iac.cli.output import error_console, note


def stop(
    run_name: RunName,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the run's own teardown.")] = 300,
    yes: Yes = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Also a run whose owner's process is alive on another machine or in another state dir "
                        "(it is asked to stop, then its stack is destroyed).")] = False,
) -> None:
    """Stop a run: stop its commands, destroy its stack, remove what it left (a scheduled task:
    unregister it, and stop its run in progress)."""
    from dstack_iac.runs.schedule import unregister
    from dstack_iac.runs.stop import stop_run
    from dstack_iac.state import runs

    if unregister(run_name, say=note, timeout=timeout):
        error_console.print(f"Unregistered the schedule {run_name}: no run starts any more.", style="green",
                            markup=False)
        record = runs.load(run_name)
        if record is None or not record.effective_status.active:
            return
    stop_run(run_name, say=note, timeout=timeout, force=force)
    error_console.print(f"Stopped {run_name}: its stack is destroyed.", style="green", markup=False)
