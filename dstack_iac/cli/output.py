"""Terminal output shared by the commands."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from dstack_iac.config.errors import ConfigError

# Piped output (CI, logs, tests) is not cut at 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 240)
error_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 240)


def print_config_error(exc: ConfigError) -> None:
    count = len(exc.issues)
    error_console.print(f"[red]error[/]: {count} problem{'s' if count != 1 else ''} in the configuration; nothing was provisioned")
    for issue in exc.issues:
        error_console.print(f"  {issue.render()}", markup=False, soft_wrap=True)


def fail(message: str, code: int) -> typer.Exit:
    """Print `error: message` (not markup: messages quote user input) and return the Exit to raise."""
    error_console.print("[red]error[/]: ", end="")
    error_console.print(message, markup=False, soft_wrap=True)
    return typer.Exit(code)


def listing(*columns: str) -> Table:
    """The borderless table every listing uses; cells never wrap (piped output is 240 wide)."""
    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True)
    return table
