"""The tables the commands print (rendering only)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from dstack_iac.cli.output import age, listing


def plan_table(plan) -> Table:
    columns = ["RUN", "CONFIGURATION", "BACKEND", "REGION", "INSTANCE", "RESOURCES", "SPOT", "PRICE"]
    if plan.nodes > 1:
        columns.insert(3, "NODES")
    table = listing(*columns)
    price = f"${plan.offer.price:g}" + (f" (x{plan.nodes} = ${plan.total_price:g})" if plan.nodes > 1 else "")
    row = [plan.run_name, plan.configuration_path, plan.backend, plan.offer.region, plan.offer.instance_type,
           plan.offer.resources_summary(), "yes" if plan.offer.spot else "no", price]
    if plan.nodes > 1:
        row.insert(3, str(plan.nodes))
    table.add_row(*row)
    return table


def offers_table(offers: Sequence, nodes: int) -> Table:
    table = listing("#", "BACKEND", "REGION", "INSTANCE", "RESOURCES", "SPOT", "PRICE")
    for index, offer in enumerate(offers, 1):
        price = f"${offer.price:.4g}" + (f" (x{nodes} = ${offer.price * nodes:.4g})" if nodes > 1 else "")
        table.add_row(str(index), offer.backend, offer.region, offer.instance_type, offer.resources_summary(),
                      "spot" if offer.spot else "on-demand", price)
    return table


def team_runs_table(views: Sequence) -> Table:
    """Runs of everyone sharing the backend (runs/team.py's views), with whose and where."""
    table = listing("NAME", "STATUS", "OWNER", "HOST", "BACKEND", "NODES", "PRICE", "PRIORITY", "AGE", "EXIT")
    for view in views:
        record, status = view.record, view.status
        shown = status.value + (f" (clean up: dstack-iac stop {record.name})" if status.abandoned else "")
        price = "-" if record.price_per_hour is None else f"${record.price_per_hour:.4g}/h"
        table.add_row(record.name, shown, record.owner, record.host or "-", record.backend, str(record.nodes), price,
                      str(record.priority), age(record.created_at), "" if record.exit_code is None else str(record.exit_code))
    return table


def planned_changes_table(changes: Sequence, hidden: frozenset[str]) -> Table:
    from dstack_iac.infra.events import describe_inputs

    table = listing("OP", "RESOURCE", "TYPE", "PROPERTIES")
    for change in changes:
        table.add_row(change.op, change.name, change.type, describe_inputs(change.inputs, hidden))
    return table


def volumes_table(records: Sequence, users_of) -> Table:
    table = listing("NAME", "BACKEND", "REGION", "ZONE", "SIZE", "VOLUME ID", "USED BY")
    for record in records:
        size = f"{record.size_gb:g}GB" if record.size_gb else "-"
        table.add_row(record.name, record.backend, record.region or "-", record.availability_zone or "-", size,
                      record.volume_id or "-", ", ".join(users_of(record.name)) or "-")
    return table


def schedules_table(schedules: Sequence[dict]) -> Table:
    table = listing("SCHEDULE", "CRON (UTC)", "NEXT START (UTC)", "RUNS", "LAST EXIT", "STATUS")
    for entry in schedules:
        table.add_row(entry["name"], "; ".join(entry["schedule"]), entry["next_start"] or "-",
                      str(entry["runs_started"]), "" if entry["last_exit_code"] is None else str(entry["last_exit_code"]),
                      entry["status"])
    return table
