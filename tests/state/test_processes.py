"""Leftovers are found by pid and start time, or by the paths they carry, even when a process
rewrites its command line as sshd does."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from dstack_iac.state import processes


def _sleeper(*argv: str) -> subprocess.Popen:
    """A process showing `argv` in its command line. Popen returns once the exec began: the
    kernel sets the new command line a moment later, so wait for it."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *argv])
    cmdline, deadline = Path(f"/proc/{process.pid}/cmdline"), time.monotonic() + 10
    while not cmdline.read_bytes().endswith(b"time.sleep(60)\0" + b"".join(a.encode() + b"\0" for a in argv)):
        assert time.monotonic() < deadline, "the sleeper never showed its command line"
        time.sleep(0.01)
    return process


def test_a_pid_with_its_start_time_is_one_process_and_not_its_successor():
    process = _sleeper()
    try:
        started = processes.start_time(process.pid)
        assert started is not None
        assert processes.is_same_process(process.pid, started)
        assert not processes.is_same_process(process.pid, started + 1), "a reused pid starts later"
        assert not processes.is_same_process(process.pid, None), "a marker without a start time proves nothing"
    finally:
        process.kill()
        process.wait()
    assert not processes.is_same_process(process.pid, started)


def test_a_path_is_found_as_written_and_as_sshd_shows_it(tmp_path):
    path = str(tmp_path / "state ä")
    escaped = path.replace("ä", "\\303\\244")
    plain, rewritten = _sleeper(path), _sleeper(escaped)
    try:
        found = processes.mentioning(path, environment=False)
        assert plain.pid in found and rewritten.pid in found
        assert processes.mentioning(str(tmp_path / "state b"), environment=False) == []
    finally:
        for process in (plain, rewritten):
            process.kill()
            process.wait()
