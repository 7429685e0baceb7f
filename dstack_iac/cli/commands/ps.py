"""`ps`: the runs this machine knows, active ones by default."""

from __future__ import annotations

from typing import Annotated

import typer

from dstack_iac.cli.options import AsJson
from dstack_iac.cli.output import console, print_json
from dstack_iac.cli.tables import team_runs_table


def ps(
    show_all: Annotated[bool, typer.Option("-a", "--all", help="Include finished runs.")] = False,
    as_json: AsJson = False,
    mine: Annotated[bool, typer.Option("--mine", help="Only your runs (of everyone sharing the backend).")] = False,
) -> None:
    """List runs of everyone sharing the Pulumi backend (active ones; --all for finished too)."""
    from dstack_iac.cli.output import note
    from dstack_iac.state.team import is_mine, list_runs

    from dstack_iac.runs.schedule import all_schedules, schedule_status

    views = [v for v in list_runs(note=note) if (show_all or v.status.active) and (not mine or is_mine(v))]
    schedules = all_schedules()
    if as_json:
        print_json([view.as_json() for view in views]
                   + [schedule_status(s) for s in schedules])
        return
    console.print(team_runs_table(views), crop=False)
    if schedules:
        from dstack_iac.cli.tables import schedules_table

        console.print()
        console.print(schedules_table([schedule_status(s) for s in schedules]), crop=False)
