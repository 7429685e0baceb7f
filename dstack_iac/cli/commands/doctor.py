"""`doctor`: can a local run work on this machine?"""

from __future__ import annotations

from typing import Annotated

import typer

from dstack_iac.cli.output import console


def doctor(brief: Annotated[bool, typer.Option("--brief", help="One line.")] = False) -> None:
    """Check that a local run can work on this machine."""
    from rich.table import Table

    from dstack_iac.runs.doctor import run_checks

    checks = run_checks()
    ok = all(check.ok for check in checks)
    if brief:
        console.print("doctor: " + ("OK" if ok else "problems: " + ", ".join(c.name for c in checks if not c.ok)),
                      markup=False)
    else:
        table = Table("CHECK", "STATUS", "DETAIL", box=None)
        for check in checks:
            status = "[dim]INFO[/]" if check.info else "[green]OK[/]" if check.ok else "[red]FIX[/]"
            detail = check.detail if check.ok else f"{check.detail}\n{check.fix}"
            table.add_row(check.name, status, detail)
        console.print(table)
    raise typer.Exit(0 if ok else 1)
