"""A schedule end to end on the local backend, through the CLI: `* * * * *` registers and
returns, `ps` shows it with its next start, the next minute starts exactly one run (still going
at the time of the checks), and `stop NAME` unregisters it, stops that run and leaves nothing."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from dstack_iac.state import processes
from tests.helpers import assert_nothing_left, dstack, write_task

pytestmark = pytest.mark.e2e


def _ps(home: Path) -> list[dict]:
    return json.loads(dstack(home, "ps", "--all", "--json").stdout)


def test_every_minute_starts_one_run_and_stop_unregisters(e2e_home, tmp_path):
    write_task(tmp_path, "name: minutely\nschedule:\n  cron: '* * * * *'\ncommands:\n"
                         "  - echo scheduled-run-of-$DSTACK_RUN_NAME\n  - sleep 600\n")
    registered = dstack(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    try:
        assert registered.returncode == 0, registered.stdout + registered.stderr
        assert "Scheduled minutely (* * * * *, UTC): next start" in registered.stderr
        [schedule] = [entry for entry in _ps(e2e_home) if entry.get("type") == "schedule"]
        upcoming = datetime.strptime(schedule["next_start"], "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)
        assert 0 < (upcoming - datetime.now(timezone.utc)).total_seconds() <= 60
        assert (schedule["name"], schedule["status"], schedule["runs_started"]) == ("minutely", "scheduled", 0)
        table = dstack(e2e_home, "ps").stdout
        assert "minutely" in table and schedule["next_start"] in table

        # Within the next minute (and the run's start-up), exactly one run.
        deadline = time.monotonic() + 100
        while time.monotonic() < deadline:
            if "scheduled-run-of-minutely" in dstack(e2e_home, "logs", "minutely").stdout:
                break
            time.sleep(2)
        else:
            raise AssertionError("no scheduled run started within 100 s:\n"
                                 + (e2e_home / "schedules" / "minutely.log").read_text())
        entries = _ps(e2e_home)
        runs = [entry for entry in entries if entry.get("type") != "schedule"]
        [schedule] = [entry for entry in entries if entry.get("type") == "schedule"]
        assert [(r["name"], r["status"]) for r in runs] == [("minutely", "running")]
        assert schedule["runs_started"] == 1
        supervisor = schedule["pid"]
    finally:
        stopped = dstack(e2e_home, "stop", "minutely")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "Unregistered the schedule minutely" in stopped.stderr
    assert not processes.alive(supervisor), "the schedule's supervisor ended"
    # The schedule is gone, and its one run was stopped (not left running, not started again).
    assert [(r.get("type"), r["name"], r["status"]) for r in _ps(e2e_home)] == [(None, "minutely", "stopped")]
    assert_nothing_left(e2e_home)
