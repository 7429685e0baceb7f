"""Stopping a run from another terminal, or cleaning up one whose owner is gone.

An attached run is asked to stop the way Ctrl+C would (SIGTERM to its owner) and given time to
tear down. Then, whatever happened before, the run's stack is destroyed if it still exists and
the backend sweeps what the stack never knew (a node whose creation was cut short): `stop` leaves
nothing, and running it twice, or next to `gc`, is safe.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from dstack_iac.backends.registry import get_backend
from dstack_iac.errors import BadInput
from dstack_iac.infra.stack import ManagedStack, stack_exists
from dstack_iac.paths import run_dir
from dstack_iac.state import runs
from dstack_iac.state.processes import alive
from dstack_iac.state.runs import RunStatus

Say = Callable[[str], None]


class UnknownRun(BadInput):
    pass


def stop_run(name: str, say: Say, timeout: float = 300.0, force: bool = False) -> None:
    """`force`: also a run whose owner lives elsewhere (asked to stop through the backend)."""
    from dstack_iac.state.team import find_run

    view = find_run(name)
    if view is not None and not view.here:  # another state dir's or machine's (runs/remote.py)
        from dstack_iac.runs.remote import stop_remote_run

        stop_remote_run(view, say, timeout=timeout, force=force)
        return
    record = runs.load(name)
    if record is None:
        raise UnknownRun(f"no run named {name!r} (see `dstack-iac ps --all`)")
    holder = runs.lock_holder(name)
    if holder is not None and holder == record.owner_pid and record.status.active:
        # The owner holds the stack: ask it to tear down, as Ctrl+C would, and wait.
        os.kill(holder, signal.SIGTERM)
        say(f"Asked the owner of {name} (pid {holder}) to stop; waiting for its teardown...")
        deadline = time.monotonic() + timeout
        while runs.owner_alive(name) and alive(holder) and time.monotonic() < deadline:
            time.sleep(0.2)
    clean_up_run(name, say)


KEY_FILES = ("id_ed25519", "id_ed25519.pub", "known_hosts")


def destroy_leftovers(name: str, backend, directory: Path | None, say: Say, whose: str = "") -> list[str]:
    """Sweep what the run left outside its stack (with its directory on this machine), destroy
    the stack if it still exists, and remove the run's keys. Returns what the sweep removed."""
    # What the run left outside the stack goes first: on this machine that also frees the disk
    # a full run may have filled, which the engine needs to take the stack's lock.
    swept = backend.sweep(name, directory) if backend is not None and directory is not None else []
    if stack_exists(name):
        stack = ManagedStack(name)
        for pid in stack.release_abandoned_locks():
            say(f"Released the lock left on {name}'s stack by an interrupted Pulumi process"
                + (f" (pid {pid})." if pid else "."))
        say(f"Destroying the stack of {name}{f' ({whose})' if whose else ''}...")
        stack.destroy(remove=True)
    for item in swept:
        say(f"Removed {item}.")
    if directory is not None:
        for leftover in KEY_FILES:
            (directory / leftover).unlink(missing_ok=True)
    return swept


def clean_up_run(name: str, say: Say, backend_name: str | None = None) -> list[str]:
    """Destroy the run's stack if it still exists, sweep the run's leftovers, record it stopped.
    Returns what was removed besides the stack."""
    claim = runs.take_over(name)
    try:
        record = runs.load(name)
        backend_name = record.backend if record is not None else backend_name
        backend = get_backend(backend_name) if backend_name else None
        swept = destroy_leftovers(name, backend, run_dir(name), say)
        from dstack_iac.runs.access import withdraw

        withdraw(name)  # its ssh config entries and access file
        if record is not None and record.status.active:
            runs.finish(record, RunStatus.STOPPED, record.exit_code, "stopped by `dstack-iac stop`")
        return swept
    finally:
        claim.release()
