"""`logs`: a run's output."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dstack_iac.cli.options import RunName


def logs(
    run_name: RunName,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing while the run is active.")] = False,
) -> None:
    """Print a run's output."""
    from dstack_iac.runs.logs import print_logs

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    print_logs(run_name, write, follow=follow)
