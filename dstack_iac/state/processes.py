"""Finding and stopping processes by pid (never by name): the markers runs leave, checked in /proc."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from the state field on (the command name may hold spaces and
    parentheses: the fields follow the last ')')."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot): with the pid, an identity that a
    reused pid cannot fake, and that holds when a process rewrites its own command line."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def is_same_process(pid: int, started: int | None) -> bool:
    return bool(pid) and started is not None and alive(pid) and start_time(pid) == started


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited: it only waits for its parent to reap it.
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def terminate(pids: list[int], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL whatever is still alive after `grace` seconds."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            _signal(pid, signal.SIGKILL)


def terminate_group(pgid: int, grace: float = 3.0) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def mentioning(text: str, environment: bool = True) -> list[int]:
    """Live processes (other than this one) whose command line, or environment, contains
    `text`: how a run's leftovers are found by the paths they carry."""
    needles = {text.encode(), _as_shown_by_sshd(text)}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes() if environment else b""
            if any(needle in cmdline or needle in environ for needle in needles):
                if alive(int(entry.name)):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def _as_shown_by_sshd(text: str) -> bytes:
    """sshd rewrites its command line with every non-ASCII byte as a backslashed octal
    escape: a path holding one is only found in that form."""
    return b"".join(bytes([b]) if b < 0x80 else b"\\%03o" % b for b in text.encode())
