"""Reading a run's output, now or as it grows."""

from __future__ import annotations

import time
from collections.abc import Callable

from dstack_iac.errors import BadInput
from dstack_iac.state import runs


def print_logs(name: str, write: Callable[[str], None], follow: bool = False, poll: float = 0.2) -> None:
    """What the run printed; with `follow`, more as it comes, until the run's owner is gone (a
    run whose owner died prints nothing more)."""
    record = runs.load(name)
    if record is None:
        raise BadInput(f"no run named {name!r} (see `dstack-iac ps --all`)")
    position = 0
    while True:
        try:
            with open(record.log_path, errors="replace") as handle:
                handle.seek(position)
                chunk = handle.read()
                position = handle.tell()
        except FileNotFoundError:
            chunk = ""
        if chunk:
            write(chunk)
        if not follow:
            return
        if not runs.owner_alive(name):
            # One last read: what the owner wrote just before it ended.
            try:
                with open(record.log_path, errors="replace") as handle:
                    handle.seek(position)
                    rest = handle.read()
            except FileNotFoundError:
                rest = ""
            if rest:
                write(rest)
            return
        time.sleep(poll)
