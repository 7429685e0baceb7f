"""`attach`: follow an active run from this terminal: its output, its ports."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dstack_iac.cli.options import RunName
from dstack_iac.cli.output import error_console, note


def attach(
    run_name: RunName,
    logs: Annotated[bool, typer.Option("--logs", help="Print the output from the start, not only what comes.")] = False,
    port: Annotated[list[str], typer.Option("-p", "--port", help="Port mapping: 8080, 3000:7860 or *:8080 "
                                                                 "(overrides the run's mapping of that port).")] = [],
) -> None:
    """Attach to a run: stream its output and forward its ports; Ctrl+C detaches (the run goes on)."""
    from dstack_iac.runs.attach import AttachOutput, attach as follow
    from dstack_iac.runs.stop import stop_run

    def line(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def event(text: str) -> None:
        error_console.print(text, style="cyan", markup=False, soft_wrap=True)

    def ask_to_stop() -> bool:
        if not sys.stdin.isatty():
            return False
        try:
            return typer.confirm(f"\nStop the run {run_name}?", default=False)
        except (typer.Abort, KeyboardInterrupt, EOFError):
            return False

    def stop(name: str) -> None:
        stop_run(name, say=note)
        error_console.print(f"Stopped {name}: its stack is destroyed.", style="green", markup=False)

    code = follow(run_name, AttachOutput(line=line, event=event), from_start=logs, ports=port,
                  ask_to_stop=ask_to_stop, stop=stop)
    raise typer.Exit(code)
