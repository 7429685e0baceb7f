"""`offers`: what the backends offer for a task (or just the flags), cheapest first."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from dstack_iac.cli.options import AsJson, task_options
from dstack_iac.cli.output import console, note, print_json
from dstack_iac.cli.tables import offers_table

if TYPE_CHECKING:
    from dstack_iac.config.loader import Overrides


@task_options
def offers(
    ctx: typer.Context,
    repo_dir: Annotated[Path, typer.Argument(help="Where to look for .dstack.yml.")] = Path("."),
    as_json: AsJson = False,
    max_offers: Annotated[int, typer.Option("--max-offers", min=1, help="How many offers to show.")] = 20,
    refresh: Annotated[bool, typer.Option("--refresh", help="Download current prices first (needs internet).")] = False,
    *,
    file: Optional[Path],
    overrides: Overrides,
    run_args: list[str],
) -> None:
    """List the offers that match a task (or just the flags), cheapest first."""
    from dstack_iac.config.loader import load_task
    from dstack_iac.offers.catalog import SOURCE_NOTE
    from dstack_iac.runs.offers import list_offers, refresh_catalogs

    if refresh:
        counts = refresh_catalogs()
        note("Catalog refreshed: " + ", ".join(f"{name} {count} rows" for name, count in counts.items()))
    task = load_task(repo_dir, file, overrides, run_args, flags_only_if_missing=True)
    found = list_offers(task, note)
    nodes = task.configuration.nodes
    shown = found[:max_offers]
    if as_json:
        print_json({"nodes": nodes, "total": len(found),
                    "offers": [{**o.model_dump(mode="json"), "total_price": round(o.price * nodes, 5)} for o in shown]})
        return
    console.print(offers_table(shown, nodes), crop=False)
    console.file.flush()  # the footer (stderr) comes after the table, on its own line
    more = f" (showing {len(shown)} of {len(found)}; --max-offers N for more)" if len(found) > len(shown) else ""
    note(f"\n{len(found)} offers{more}. {SOURCE_NOTE}")
