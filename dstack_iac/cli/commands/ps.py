"""`ps`: the runs this machine knows, active ones by default."""

from __future__ import annotations

from typing import Annotated

import typer

from dstack_iac.cli.options import AsJson
from dstack_iac.cli.output import console, print_json
from dstack_iac.cli.tables import runs_table


def ps(
    show_all: Annotated[bool, typer.Option("-a", "--all", help="Include finished runs.")] = False,
    as_json: AsJson = False,
) -> None:
    """List runs (active ones; --all for finished too)."""
    from dstack_iac.state import runs

    records = [r for r in runs.all_runs() if show_all or r.effective_status.active]
    if as_json:
        print_json([{**r.model_dump(mode="json"), "status": r.effective_status.value} for r in records])
        return
    console.print(runs_table(records), crop=False)
