"""The schedule's supervisor loop with the run itself stubbed: a run whose own commands exit as
if signalled does not end the schedule; a signal the supervisor got during a run does."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from dstack_iac.config.models import TaskConfiguration
from dstack_iac.model.offers import Offer
from dstack_iac.model.plan import RunPlan
from dstack_iac.runs import schedule, supervisor
from dstack_iac.runs.supervisor import DetachedRequest

OFFER = Offer(backend="local", region="local", instance_type="vm", cpus=2, memory_gb=4, disk_gb=10, price=0)


@pytest.fixture
def request_of(tmp_path):
    configuration = TaskConfiguration.model_validate({"type": "task", "commands": ["true"],
                                                      "schedule": {"cron": "* * * * *"}})
    plan = RunPlan(run_name="nightly", configuration=configuration, configuration_path="t.dstack.yml",
                   repo_dir=tmp_path, backend="local", offer=OFFER, nodes=1, python="python3")
    return DetachedRequest(plan=plan, archive=b"", schedule=["* * * * *"])


def test_runs_exiting_143_go_on_and_a_signal_during_a_run_ends_the_schedule(request_of, monkeypatch, state_dir):
    # Every trigger is due at once: the loop starts the runs one after the other.
    monkeypatch.setattr(schedule, "next_start",
                        lambda cron, after=None: datetime.now(timezone.utc) + timedelta(milliseconds=10))
    exits = [143, 130, 0, 143]  # the last run's supervisor is signalled (a `stop`, a shutdown)
    started = []

    def supervise_run(request, on_claimed):
        code = exits[len(started)]
        run = SimpleNamespace(run_dir=state_dir / "runs" / "nightly",
                              interrupts=SimpleNamespace(requested=object() if len(started) == 3 else None))
        run.run_dir.mkdir(parents=True, exist_ok=True)
        started.append(code)
        on_claimed(run)
        return code

    monkeypatch.setattr(supervisor, "supervise_run", supervise_run)
    monkeypatch.setattr(supervisor, "_detach_output", lambda path: None)  # keep pytest's own output
    answers = []
    assert schedule.serve_schedule(request_of, answers.append, detach_output=lambda path: None) == 0
    assert answers == [{"ok": True, "pid": answers[0]["pid"]}]
    assert started == [143, 130, 0, 143]
    assert schedule.load("nightly") is None, "the schedule unregistered itself"
