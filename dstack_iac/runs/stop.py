"""Cleaning up a run whose CLI is gone (killed, or its teardown interrupted)."""

from __future__ import annotations

from typing import Callable

from dstack_iac.infra.stack import RunStack, stack_exists
from dstack_iac.runs import registry
from dstack_iac.runs.registry import RunStatus


def clean_up_run(run_name: str, say: Callable[[str], None] = print) -> None:
    """Destroy the run's stack (its providers stop every process they started) and record it."""
    if stack_exists(run_name):
        stack = RunStack(run_name)
        for pid in stack.release_abandoned_locks():
            say(f"Released the lock left on {run_name}'s stack by an interrupted Pulumi process (pid {pid}).")
        say(f"Destroying the stack of {run_name}...")
        stack.destroy_and_remove()
    else:
        say(f"{run_name} has no stack left.")
    record = registry.load(run_name)
    if record is not None and record.effective_status.active:
        registry.finish(record, RunStatus.STOPPED, record.exit_code, "stopped by `dstack-iac stop`")
