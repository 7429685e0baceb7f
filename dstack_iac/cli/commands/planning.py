"""What `run` and `preview` share before anything is created: the task, its plan, the backend's
access check. Every error here means nothing was provisioned, and says so."""

from __future__ import annotations

from typing import TYPE_CHECKING

import contextlib
from collections.abc import Iterator
from pathlib import Path

from dstack_iac.cli.output import console, note
from dstack_iac.cli.tables import plan_table
from dstack_iac.errors import DstackIacError

if TYPE_CHECKING:
    from dstack_iac.config.loader import Overrides, Task

NOTHING_PROVISIONED = "(nothing was provisioned)"


@contextlib.contextmanager
def nothing_provisioned() -> Iterator[None]:
    try:
        yield
    except DstackIacError as exc:
        if NOTHING_PROVISIONED not in exc.render() and "nothing was provisioned" not in exc.render():
            exc.hint = f"{exc.hint}\n{NOTHING_PROVISIONED}".strip()
        raise


def load_and_plan(repo_dir: Path, file: Path | None, overrides: Overrides, run_args: list[str],
                  default_name: str | None = None, lease: str | None = None, show_plan: bool = True):
    """(task, plan, backend), with the plan table shown (unless `show_plan` is False: output
    meant for machines) and the backend's access checked. Without `default_name`, an unnamed task
    gets a fresh run name."""
    from dstack_iac.config.loader import load_task

    from dstack_iac.backends.registry import get_backend
    from dstack_iac.runs.planning import lease_seconds, plan_task

    from dstack_iac.paths import check_state_dir, require_usable_state_dir

    with nothing_provisioned():
        check_state_dir()  # before planning reads this machine (its disk is the state dir's)
        seconds = lease_seconds(lease)
        task: Task = load_task(repo_dir, file, overrides, run_args)
        plan = plan_task(task, task.configuration.name or default_name, lease_seconds=seconds, note=note)
        if show_plan:
            console.print(plan_table(plan), crop=False)
            console.print()
        backend = get_backend(plan.backend)
        source = backend.check_access()
        if source:
            note(f"{backend.name.upper()} credentials: {source}")
        # Only now is anything written: a task that cannot run leaves no state behind.
        require_usable_state_dir()
    return task, plan, backend
