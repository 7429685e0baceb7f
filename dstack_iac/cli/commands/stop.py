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
) -> None:
    """Stop a run: stop its commands, destroy its stack, remove what it left."""
    from dstack_iac.runs.stop import stop_run

    stop_run(run_name, say=note, timeout=timeout)
    error_console.print(f"Stopped {run_name}: its stack is destroyed.", style="green", markup=False)
