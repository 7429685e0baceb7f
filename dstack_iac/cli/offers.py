"""`offers`: what the bundled catalog has for a task, cheapest first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from dstack_iac.cli.options import RUN_CONTEXT, task_options
from dstack_iac.cli.output import console, error_console, listing, print_config_error
from dstack_iac.config.errors import ConfigError
from dstack_iac.config.loader import Overrides, load_task


def offers_table(offers, nodes: int):
    table = listing("#", "BACKEND", "REGION", "INSTANCE", "RESOURCES", "SPOT", "PRICE")
    for index, offer in enumerate(offers, 1):
        price = f"${offer.price:.4g}" + (f" (x{nodes} = ${offer.price * nodes:.4g})" if nodes > 1 else "")
        table.add_row(str(index), offer.backend, offer.region, offer.instance_type, offer.resources_summary(),
                      "spot" if offer.spot else "on-demand", price)
    return table


def register(app: typer.Typer) -> None:
    @app.command(context_settings=RUN_CONTEXT)
    @task_options
    def offers(
        ctx: typer.Context,
        repo_dir: Annotated[Path, typer.Argument(help="Where to look for .dstack.yml.")] = Path("."),
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
        max_offers: Annotated[int, typer.Option("--max-offers", min=1, help="How many offers to show.")] = 20,
        refresh: Annotated[bool, typer.Option("--refresh", help="Download current prices first (needs internet).")] = False,
        *,
        file: Optional[Path],
        overrides: Overrides,
        run_args: list[str],
    ) -> None:
        """List the cloud offers that match a task (or just the flags), cheapest first."""
        from dstack_iac.offers.catalog import SOURCE_NOTE
        from dstack_iac.offers.models import NoOfferError
        from dstack_iac.offers.query import OfferQuery, find_offers

        if refresh:
            from dstack_iac.offers.refresh import refresh_catalog

            try:
                counts = refresh_catalog()
            except (OSError, ValueError) as exc:
                error_console.print(f"[red]error[/]: could not refresh the catalog: {exc}", soft_wrap=True)
                raise typer.Exit(1) from None
            error_console.print("Catalog refreshed: " + ", ".join(f"{b} {n} rows" for b, n in counts.items()),
                                style="dim")
        try:
            task = load_task(repo_dir, file, overrides, run_args, flags_only_if_missing=True)
        except ConfigError as exc:
            print_config_error(exc)
            raise typer.Exit(exc.exit_code) from None
        query = OfferQuery.from_configuration(task.configuration)
        try:
            found = find_offers(query)
        except NoOfferError as exc:
            error_console.print(f"[red]error[/]: {exc}", markup=True, soft_wrap=True, highlight=False)
            raise typer.Exit(exc.exit_code) from None
        shown = found[:max_offers]
        if as_json:
            console.print_json(json.dumps({
                "nodes": query.nodes, "total": len(found),
                "offers": [{**o.model_dump(mode="json"), "total_price": round(o.price * query.nodes, 5)} for o in shown],
            }))
            return
        console.print(offers_table(shown, query.nodes), crop=False)
        more = f" (showing {len(shown)} of {len(found)}; --max-offers N for more)" if len(found) > len(shown) else ""
        error_console.print(f"{len(found)} offers{more}. {SOURCE_NOTE}", style="dim", soft_wrap=True, highlight=False)
