"""Reading a run's output, now or as it grows."""

from __future__ import annotations

import time
from collections.abc import Callable

from dstack_iac.errors import BadInput
from dstack_iac.state import runs


def print_logs(name: str, write: Callable[[str], None], follow: bool = False, poll: float = 0.2,
               since: float | None = None, node: int | None = None) -> None:
    """What the run printed (`since` a time, of one `node`); with `follow`, more as it comes,
    until the run's owner is gone (a run whose owner died prints nothing more)."""
    from dstack_iac.runs.log_index import NodeFilter, offset_since
    from dstack_iac.state.team import find_run

    view = find_run(name)
    if view is not None and not view.here:  # another state dir's or machine's: the log the backend keeps
        from dstack_iac.runs.remote import print_remote_logs

        print_remote_logs(view, write, follow=follow, since=since, node=node)
        return
    record = runs.load(name)
    if record is None:
        raise BadInput(f"no run named {name!r} (see `dstack-iac ps --all`)")
    if node is not None and not 0 <= node < record.nodes:
        raise BadInput(f"--node {node}: {name} has {record.nodes} node{'s' if record.nodes > 1 else ''} "
                       f"(ranks 0..{record.nodes - 1})")
    if node is not None and record.nodes > 1:
        write = NodeFilter(node, write)
    position = offset_since(record.log_path, since) if since is not None else 0
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
            getattr(write, "flush", lambda: None)()
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
            getattr(write, "flush", lambda: None)()
            return
        time.sleep(poll)
