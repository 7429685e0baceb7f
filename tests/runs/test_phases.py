"""The run lifecycle's phases against the fake backend: a real Pulumi engine and stack, nodes that
are objects of this process (no sshd), and every failure a phase can meet."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from dstack_iac.config.loader import load_task
from dstack_iac.errors import ExitStatus
from dstack_iac.runs.lifecycle import Run
from dstack_iac.runs.log import RunUI
from dstack_iac.runs.planning import plan_task
from dstack_iac.state import runs
from tests.backends.fake.backend import FakeBackend, Scenario
from tests.helpers import stack_files


class Recorder(RunUI):
    def __init__(self) -> None:
        self.said: list[str] = []
        self.warned: list[str] = []
        self.lines: list[str] = []
        super().__init__(say=self.said.append, warn=self.warned.append, line=self.lines.append,
                         resource=self.said.append)


def fake_run(tmp_path: Path, scenario: Scenario, extra: str = "", nodes: int = 1) -> tuple[Run, FakeBackend, Recorder]:
    (tmp_path / "work").mkdir(exist_ok=True)
    path = tmp_path / "work" / "t.dstack.yml"
    path.write_text(f"type: task\nname: phases\nnodes: {nodes}\ncommands: [echo hi]\n{extra}")
    backend = FakeBackend()
    backend.scenario = scenario
    os.environ["DSTACK_IAC_BACKENDS"] = "fake=tests.backends.fake.backend:FakeBackend"
    try:
        task = load_task(tmp_path / "work", path)
    finally:
        del os.environ["DSTACK_IAC_BACKENDS"]
    from dstack_iac.plan.planner import plan_run

    plan = plan_run(task, "phases", [backend], {})
    ui = Recorder()
    return Run(plan, backend, ui, archive=b""), backend, ui


def test_a_run_goes_through_every_phase_and_leaves_nothing(tmp_path, state_dir):
    run, backend, ui = fake_run(tmp_path, Scenario(output=["line one", "line two"]), nodes=2)
    result = run.run()
    assert result.exit_code == 0
    assert list(result.phases) == ["prepare", "provision", "connect", "upload", "execute", "teardown"]
    assert all(seconds >= 0 for seconds in result.phases.values())
    assert ui.lines.count("[0] line one") == 1 and "[1] line two" in ui.lines
    assert len(backend.scripts) == 2 and "DSTACK_NODES_IPS='10.0.0.1\n10.0.0.2'" in backend.scripts[0]
    assert backend.closed == 2
    assert stack_files(state_dir) == [] and not (state_dir / "runs" / "phases" / "id_ed25519").exists()
    assert runs.load("phases").status.value == "done"


def test_a_bug_in_the_program_fails_at_once_even_with_retry(tmp_path, state_dir):
    run, backend, ui = fake_run(tmp_path, Scenario(program_error_on=[1, 2, 3]), extra="retry: true\n")
    started = time.monotonic()
    result = run.run()
    assert time.monotonic() - started < 30, "not retried for an hour"
    assert result.exit_code == ExitStatus.FAILED and backend.attempt == 1
    [failure] = [w for w in ui.warned if w.startswith("Run failed")]
    assert failure == ("Run failed: provision failed: the run's Pulumi program failed: RuntimeError: a deliberate "
                       "bug in the fake cluster component")
    assert not any("retrying" in w for w in ui.warned)
    assert stack_files(state_dir) == []


def test_no_capacity_is_retried_only_when_asked(tmp_path, state_dir):
    retried, backend, ui = fake_run(tmp_path, Scenario(no_capacity_on=[1]), extra="retry: {on_events: [no-capacity]}\n")
    assert retried.run().exit_code == 0 and backend.attempt == 2
    assert any(w.startswith("Provisioning failed (the fake cloud has no capacity right now): retrying (attempt 2, "
                            "on no-capacity") for w in ui.warned)
    once, backend, ui = fake_run(tmp_path, Scenario(no_capacity_on=[1]))
    assert once.run().exit_code == ExitStatus.INFRASTRUCTURE and backend.attempt == 1
    assert "Run failed: provision failed: the fake cloud has no capacity right now" in ui.warned
    assert stack_files(state_dir) == []


def _waiting_run(name: str, priority: int) -> runs.RunClaim:
    """Another run of this machine, waiting for capacity on the fake backend, its owner alive (us)."""
    return runs.claim(runs.RunRecord(name=name, status=runs.RunStatus.PENDING, backend="fake", nodes=1,
                                     configuration="other.dstack.yml", owner_pid=os.getpid(), owner="someone",
                                     created_at=time.time(), priority=priority))


def test_a_run_waiting_for_capacity_lets_a_higher_priority_one_try_first(tmp_path, state_dir):
    urgent = _waiting_run("urgent", priority=90)
    run, backend, ui = fake_run(tmp_path, Scenario(no_capacity_on=[1]),
                                extra="priority: 10\nretry: {on_events: [no-capacity], duration: 2m}\n")
    released = []

    def urgent_gets_capacity() -> None:
        deadline = time.monotonic() + 60
        while not any(said.startswith("Waiting for capacity behind urgent") for said in ui.said):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(2)
        runs.save(runs.load("urgent").model_copy(update={"status": runs.RunStatus.RUNNING}))
        released.append(time.monotonic())

    threading.Thread(target=urgent_gets_capacity, daemon=True).start()
    try:
        result = run.run()
    finally:
        urgent.release()
    assert result.exit_code == 0 and backend.attempt == 2
    assert "Waiting for capacity behind urgent (priority 90): priority 10 comes after" in ui.said
    assert backend.attempted_at[0] >= released[0], "the run waited for the higher priority before trying"
    assert runs.load("phases").priority == 10


def test_a_run_retrying_for_capacity_is_pending_through_its_attempts(tmp_path, state_dir):
    run, backend, ui = fake_run(tmp_path, Scenario(no_capacity_on=[1, 2]),
                                extra="retry: {on_events: [no-capacity], duration: 2m}\n")
    assert run.run().exit_code == 0
    assert backend.statuses == ["provisioning", "pending", "pending"], "others see it waiting while it retries"
    assert runs.load("phases").status == runs.RunStatus.DONE


def test_a_lower_priority_or_orphaned_waiting_run_does_not_hold_a_run_back(tmp_path, state_dir):
    humble = _waiting_run("humble", priority=5)
    orphan = _waiting_run("orphan", priority=99)
    orphan.release()  # its owner is gone: it waits for nobody
    try:
        run, backend, ui = fake_run(tmp_path, Scenario(no_capacity_on=[1]),
                                    extra="priority: 50\nretry: {on_events: [no-capacity], duration: 2m}\n")
        assert run.run().exit_code == 0 and backend.attempt == 2
    finally:
        humble.release()
    assert not any(said.startswith("Waiting for capacity") for said in ui.said)
    assert backend.attempted_at[1] - backend.attempted_at[0] < 20


def test_an_unreachable_node_is_an_interruption(tmp_path, state_dir):
    run, backend, ui = fake_run(tmp_path, Scenario(unreachable_on=[1]), extra="retry: {on_events: [interruption]}\n")
    assert run.run().exit_code == 0 and backend.attempt == 2
    assert any(w.startswith("Nodes unreachable (fake node 0 refused the connection): retrying") for w in ui.warned)
    failed, backend, ui = fake_run(tmp_path, Scenario(unreachable_on=[1]), extra="retry: {on_events: [error]}\n")
    assert failed.run().exit_code == ExitStatus.FAILED and backend.attempt == 1
    assert "Run failed: connect failed: fake node 0 refused the connection" in ui.warned


def test_a_lost_node_and_a_failing_command_are_retried_on_their_events(tmp_path, state_dir):
    run, backend, ui = fake_run(tmp_path, Scenario(lost_on=[1], exit_codes={2: 5}), extra="retry: true\n")
    assert run.run().exit_code == 0 and backend.attempt == 3
    assert any(w.startswith("Lost a node (node 0 (fake) stopped answering): retrying (attempt 2") for w in ui.warned)
    assert any(w.startswith("The commands failed with exit code 5: retrying (attempt 3, on error") for w in ui.warned)


def test_a_signal_while_the_commands_run_stops_them_and_tears_down(tmp_path, state_dir):
    run, backend, ui = fake_run(tmp_path, Scenario(block=True))

    def terminate_when_running() -> None:
        deadline = time.monotonic() + 60
        while not backend.scripts and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_when_running, daemon=True).start()
    result = run.run()
    assert result.exit_code == ExitStatus.TERMINATED and result.status.value == "stopped"
    assert backend.stops >= 1 and "teardown" in result.phases
    assert any(w.startswith("Terminated: stopping the commands and tearing down") for w in ui.warned)
    assert stack_files(state_dir) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "the run's handlers are removed after it"


def test_a_taken_name_is_refused_before_anything_is_created(tmp_path, state_dir):
    first, _, _ = fake_run(tmp_path, Scenario())
    first.claim_name()
    second, backend, _ = fake_run(tmp_path, Scenario())
    with pytest.raises(runs.RunNameTaken):
        second.run()
    assert backend.attempt == 0 and stack_files(state_dir) == []
    first.claim.release()
