"""`logs` and `stop` of a run that is not this state dir's: started by a colleague, or on another
machine, or by a CLI that died, and known from the Pulumi backend (state/backend_records.py).

`stop` refuses what this machine must not do: a run whose nodes are processes of another
machine (a host-bound backend such as `local`) is stopped there, and a run whose owner lives is
stopped only with `--force` (which asks the owner to stop, through the backend, and waits for
its teardown). A run whose owner is gone is cleaned up from here: its stack is destroyed (every
user of the backend can, with the team's secrets provider), and on its own machine what it left
outside the stack is swept.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from dstack_iac.backends.registry import NotImplementedBackend, get_backend
from dstack_iac.errors import Conflict, DstackIacError
from dstack_iac.state.team import RunView, find_run
from dstack_iac.state import backend_records, identity
from dstack_iac.state.backend_records import on_this_host, owner_text
from dstack_iac.state.runs import RunRecord, RunStatus

Say = Callable[[str], None]


class OwnedElsewhere(Conflict):
    pass


def _me() -> str:
    return f"{identity.owner()} on {identity.host_name()}"


def _backend(record: RunRecord):
    try:
        return get_backend(record.backend)
    except NotImplementedBackend:
        return None


def check_may_stop(view: RunView, force: bool) -> None:
    """Refuse (OwnedElsewhere) what this machine must not stop."""
    record = view.record
    backend = _backend(record)
    if backend is not None and backend.host_bound and not on_this_host(record):
        raise OwnedElsewhere(
            f"{record.name} is a {record.backend} run of {record.host or 'another machine'}: {backend.host_bound_why}",
            hint=f"run `dstack-iac stop {record.name}` on {record.host or 'that machine'} "
                 f"(its owner: {record.owner or 'unknown'})")
    if view.status.active and view.owner_alive and not force:
        pid = f", pid {record.owner_pid}" if on_this_host(record) else ""
        raise OwnedElsewhere(f"{record.name} belongs to {owner_text(record)}{pid}, whose process is alive",
                             hint=f"ask them, or stop it anyway with `dstack-iac stop {record.name} --force`")


def stop_remote_run(view: RunView, say: Say, timeout: float = 300.0, force: bool = False) -> None:
    check_may_stop(view, force)
    record = view.record
    if view.status.active and view.owner_alive:
        backend_records.request_stop(record, by=_me())
        if on_this_host(record):
            try:
                os.kill(record.owner_pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        say(f"Asked the owner of {record.name} ({owner_text(record)}) to stop; waiting for its teardown...")
        deadline = time.monotonic() + timeout
        poll = min(2.0, backend_records.heartbeat_seconds())
        while time.monotonic() < deadline:
            current = find_run(record.name)
            if current is None or current.record.generation != record.generation or \
                    not current.status.active or not current.owner_alive:
                break
            time.sleep(poll)
    clean_up_remote_run(record, say)


def _own_run_dir(record: RunRecord) -> Path | None:
    """The run's directory on this machine, if it is one dstack-iac made and this user owns (a
    record names it; a path that is not a run's directory is never swept)."""
    if not record.run_dir or not on_this_host(record):
        return None
    directory = Path(record.run_dir)
    if directory.name != record.name or directory.parent.name != "runs":
        return None
    try:
        info = directory.lstat()
    except OSError:
        return None
    return directory if info.st_uid == os.geteuid() and not directory.is_symlink() else None


def clean_up_remote_run(record: RunRecord, say: Say) -> None:
    """Destroy the run's stack if it exists, sweep its leftovers on this machine (if it is the
    run's), and record it stopped for everyone."""
    current = backend_records.find(record.name)
    if current is not None and current.generation == record.generation:
        record = current
    from dstack_iac.runs.stop import destroy_leftovers

    destroy_leftovers(record.name, _backend(record), _own_run_dir(record), say, whose=owner_text(record))
    if record.status.active:
        stopped = record.model_copy(update={"status": RunStatus.STOPPED, "finished_at": time.time(),
                                            "message": f"stopped by `dstack-iac stop` ({_me()})"})
        backend_records.publish(stopped, force=True)
    try:
        backend_records.end_heartbeat(record)
        backend_records.clear_stop_request(record)
    except DstackIacError:
        pass


def offset_in_times(times: bytes, since: float) -> int | None:
    """The offset in the whole log of the first output at or after `since`, by the index the
    owner shipped (runs/log_index.py format): 0 when the index does not go back that far, None
    when nothing was written since (the reader starts at the log's end)."""
    truncated = times.startswith(backend_records.TIMES_TRUNCATED)
    entries: list[tuple[float, int]] = []
    for line in times.decode(errors="replace").splitlines():
        offset, _, stamp = line.partition(" ")
        try:
            entries.append((float(stamp), int(offset)))
        except ValueError:
            continue  # the truncation line, a line cut short
    later = [index for index, (stamp, _offset) in enumerate(entries) if stamp >= since]
    if not later:
        return None if entries else 0
    if truncated and later[0] == 0:
        return 0  # what was written between `since` and the oldest kept entry is not indexed any more
    return entries[later[0]][1]


def print_remote_logs(view: RunView, write: Callable[[str], None], follow: bool = False,
                      since: float | None = None, node: int | None = None) -> None:
    """The log the owner shipped to the backend (`since` a time, of one `node`, as for a run of
    this machine); with `follow`, more as the owner ships it, until the run ends or its owner is gone."""
    from dstack_iac.errors import BadInput
    from dstack_iac.runs.log_index import NodeFilter

    record = view.record
    if node is not None and not 0 <= node < record.nodes:
        raise BadInput(f"--node {node}: {record.name} has {record.nodes} node{'s' if record.nodes > 1 else ''} "
                       f"(ranks 0..{record.nodes - 1})")
    if node is not None and record.nodes > 1:
        write = NodeFilter(node, write)
    position: int | None = 0
    if since is not None:
        position = offset_in_times(backend_records.read_log_times(record) or b"", since)

    def emit() -> None:
        nonlocal position
        data = backend_records.read_log(record) or b""
        if position is None:  # --since after the last output: from the log's end on
            _all, position = backend_records.log_after(data, 0)
            return
        chunk, position = backend_records.log_after(data, position)
        if chunk:
            write(chunk.decode("utf-8", errors="replace"))

    emit()
    if not follow:
        getattr(write, "flush", lambda: None)()
        return
    poll = min(2.0, backend_records.heartbeat_seconds())
    while True:
        current = find_run(view.name)
        if current is None or current.record.generation != record.generation or \
                not current.status.active or not current.owner_alive:
            emit()  # what the owner shipped at the end
            getattr(write, "flush", lambda: None)()
            return
        time.sleep(poll)
        emit()
