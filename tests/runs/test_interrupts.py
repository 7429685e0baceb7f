"""Signals at every moment of a run, through the CLI: whatever the moment, the run ends with the
signal's exit code, no traceback, and nothing left (no process, stack, lock, node directory or
key). Set DSTACK_IAC_MATRIX_REPORT=path to get the matrix as a JSON table."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from dstack_iac.errors import ExitStatus
from tests.helpers import assert_nothing_left, spawn, write_task

pytestmark = pytest.mark.e2e
EXIT = {signal.SIGINT: ExitStatus.INTERRUPTED, signal.SIGTERM: ExitStatus.TERMINATED,
        signal.SIGHUP: ExitStatus.HANGUP}
PROVISIONING_OFFSETS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0)
REPORT: list[dict] = []


def _report(signum, moment: str, code: int, left: str, seconds: float) -> None:
    REPORT.append({"signal": signal.Signals(signum).name, "moment": moment, "exit": code, "left": left,
                   "seconds": round(seconds, 2)})
    target = os.environ.get("DSTACK_IAC_MATRIX_REPORT")
    if target:
        Path(target).write_text(json.dumps(REPORT, indent=1))


def interrupt(home: Path, tmp_path: Path, body: str, marker: str, signum: int, moment: str, delay: float = 0.0,
              whole_group: bool = False, extra_files: dict | None = None) -> str:
    write_task(tmp_path, body)
    for name, size in (extra_files or {}).items():
        (tmp_path / name).write_bytes(os.urandom(size))
    process = spawn(home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y", new_session=whole_group)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            break
    time.sleep(delay)
    sent = time.monotonic()
    if whole_group:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    rest = process.communicate(timeout=120)[0]
    took = time.monotonic() - sent
    output = "".join(seen) + rest
    try:
        assert process.returncode == EXIT[signum], output
        assert "Traceback" not in output
        assert_nothing_left(home)
    except AssertionError:
        _report(signum, moment, process.returncode, "LEFT SOMETHING", took)
        raise
    _report(signum, moment, process.returncode, "nothing", took)
    return output


THREE_NODES = "name: intr\nnodes: 3\ncommands:\n  - echo started\n  - sleep 600\n"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
@pytest.mark.parametrize("offset", PROVISIONING_OFFSETS)
def test_a_signal_while_the_stack_is_created(e2e_home, tmp_path, signum, offset):
    interrupt(e2e_home, tmp_path, THREE_NODES, "Provisioning", signum, f"provisioning +{offset}s", delay=offset)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
@pytest.mark.parametrize("moment, marker, body, files", [
    ("connect", "Connecting to", THREE_NODES, None),
    ("upload", "Uploading", THREE_NODES, {"big.bin": 40 * 1024 * 1024}),
    ("commands", "started", THREE_NODES, None),
    ("teardown", "Tearing down", "nodes: 3\ncommands:\n  - echo done\n", None),
    ("retry pause", "retrying", "retry: {on_events: [error], duration: 5m}\ncommands:\n  - exit 3\n", None),
])
def test_a_signal_at_each_later_moment(e2e_home, tmp_path, signum, moment, marker, body, files, monkeypatch):
    monkeypatch.setenv("DSTACK_IAC_UPLOAD_LIMIT", "100MB")
    interrupt(e2e_home, tmp_path, body, marker, signum, moment, extra_files=files)


def test_the_terminal_going_away_hangs_up_the_whole_group(e2e_home, tmp_path):
    interrupt(e2e_home, tmp_path, THREE_NODES, "started", signal.SIGHUP, "commands (process group)", whole_group=True)
