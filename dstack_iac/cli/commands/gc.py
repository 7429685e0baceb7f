"""`gc`: find (and with --yes remove) what runs without a live owner or a stack left behind."""

from __future__ import annotations

from dstack_iac.cli.options import AsJson, Yes
from dstack_iac.cli.output import console, error_console, listing, note, print_json


def gc(yes: Yes = False, as_json: AsJson = False) -> None:
    """List what abandoned runs left (stacks, nodes, keys, tagged cloud resources); --yes removes it."""
    from dstack_iac.runs.gc import collect, find_garbage

    garbage = find_garbage(note=note)
    if as_json:
        print_json([item.model_dump(mode="json") for item in garbage])
    elif garbage:
        table = listing("RUN", "BACKEND", "WHY", "LEFT BEHIND")
        for item in garbage:
            table.add_row(item.run, item.backend or "-", item.why, "; ".join(item.leftovers))
        console.print(table, crop=False)
    else:
        note("Nothing left behind.")
    if not garbage:
        return
    if not yes:
        note("Run `dstack-iac gc --yes` to remove it.")
        return
    collect(garbage, say=note)
    error_console.print(f"Removed what {len(garbage)} run{'s' if len(garbage) != 1 else ''} left behind.",
                        style="green", markup=False)
