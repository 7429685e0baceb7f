"""Terminal output shared by the commands."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

# Piped output (CI, logs, tests) is not cut at 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 240)
error_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 240)


def print_error(message: str) -> None:
    """`error: message` on stderr (not markup: messages quote user input)."""
    error_console.print("[red]error[/]: ", end="")
    error_console.print(message, markup=False, soft_wrap=True)


def note(message: str, style: str = "dim") -> None:
    error_console.print(message, style=style, markup=False, soft_wrap=True, highlight=False)


def listing(*columns: str) -> Table:
    """The borderless table every listing uses; cells never wrap (piped output is 240 wide)."""
    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True)
    return table


def print_json(data) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def age(created_at: float) -> str:
    import time

    seconds = int(time.time() - created_at)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
