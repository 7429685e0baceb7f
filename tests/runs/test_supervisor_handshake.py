"""The CLI waits for the supervisor's answer with a deadline: a supervisor that stays silent is
killed and said, one that exits early is said with what it printed."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from dstack_iac.runs.supervisor import SupervisorFailed, await_answer


def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_a_silent_supervisor_is_given_up_at_the_deadline_and_killed():
    process = _python("import time; print('importing...', flush=True); time.sleep(60)")
    started = time.monotonic()
    with pytest.raises(SupervisorFailed, match=r"did not answer within 1s: importing\.\.\."):
        await_answer(process, timeout=1)
    assert time.monotonic() - started < 5
    assert process.poll() is not None, "killed"


def test_the_answer_is_read_past_other_lines_and_an_early_exit_is_said():
    process = _python("import json; print('a warning'); print(json.dumps({'ok': True, 'pid': 7}), flush=True)")
    assert await_answer(process, timeout=10) == {"ok": True, "pid": 7}
    process.wait(timeout=10)
    with pytest.raises(SupervisorFailed, match="exited before it answered: Traceback"):
        await_answer(_python("raise SystemExit(__import__('no_such_module'))"), timeout=10)
