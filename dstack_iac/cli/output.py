"""Terminal output shared by the commands."""

from __future__ import annotations

import sys

from rich.console import Console

from dstack_iac.config.errors import ConfigError

# Piped output (CI, logs, tests) is not cut at 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 240)
error_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 240)


def print_config_error(exc: ConfigError) -> None:
    count = len(exc.issues)
    error_console.print(f"[red]error[/]: {count} problem{'s' if count != 1 else ''} in the configuration; nothing was provisioned")
    for issue in exc.issues:
        error_console.print(f"  {issue.render()}", markup=False, soft_wrap=True)
