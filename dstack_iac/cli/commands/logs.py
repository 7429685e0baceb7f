"""`logs`: a run's output."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from dstack_iac.cli.options import RunName


def logs(
    run_name: RunName,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing while the run is active.")] = False,
    since: Annotated[Optional[str], typer.Option(
        "--since", help="Only what was printed since: a duration ago (10m, 2h) or an RFC 3339 time.")] = None,
    node: Annotated[Optional[int], typer.Option("--node", help="Only this node's output (its rank).")] = None,
) -> None:
    """Print a run's output."""
    from dstack_iac.runs.log_index import parse_since
    from dstack_iac.runs.logs import print_logs

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    print_logs(run_name, write, follow=follow, since=parse_since(since) if since else None, node=node)
