"""Scheduled tasks (`schedule: {cron: ...}`, UTC): `run` registers the task and returns; a
supervisor process (runs/supervisor.py) owns the registration and starts one run at each trigger.

The registration is `schedules/<name>.json` in the state dir, owned (flock on
`schedules/<name>.lock`) by its supervisor for as long as it lives. The supervisor runs each run
itself, with the lifecycle every run uses, one after the other: a run still going at the next
trigger is not started twice (that trigger is skipped, and said), and neither is one while a run
of the same name started elsewhere is active. Each run is named after the schedule, so
`attach`, `logs` and `ssh` take the schedule's name. `stop NAME` unregisters: the record goes,
the supervisor is asked to end (a run in progress is stopped and torn down), and nothing is left.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel

from dstack_iac.config.schedule import next_start
from dstack_iac.errors import BadInput, DstackIacError
from dstack_iac.paths import ensure_private_dir, state_dir, write_private
from dstack_iac.state import processes, runs


class ScheduleTaken(BadInput):
    pass


class ScheduleRecord(BaseModel):
    name: str
    cron: list[str]
    configuration: str
    backend: str
    created_at: float
    pid: int
    started: int | None = None  # the supervisor's start time (with the pid, its identity)
    next_start: float | None = None
    runs_started: int = 0
    skipped: int = 0
    last_started_at: float | None = None
    last_exit_code: int | None = None

    @property
    def alive(self) -> bool:
        return processes.is_same_process(self.pid, self.started)


def schedules_dir() -> Path:
    return state_dir() / "schedules"


def _record_path(name: str) -> Path:
    return schedules_dir() / f"{name}.json"


def load(name: str) -> ScheduleRecord | None:
    try:
        return ScheduleRecord.model_validate_json(_record_path(name).read_text())
    except (OSError, ValueError):
        return None


def save(record: ScheduleRecord) -> None:
    write_private(_record_path(record.name), record.model_dump_json(indent=2))


def all_schedules() -> list[ScheduleRecord]:
    directory = schedules_dir()
    names = sorted(p.stem for p in directory.glob("*.json")) if directory.is_dir() else []
    return [record for record in map(load, names) if record is not None]


def schedule_status(record: ScheduleRecord) -> dict:
    """What `ps` shows of a schedule (and `ps --json` gives)."""
    alive = record.alive
    upcoming = datetime.fromtimestamp(record.next_start, timezone.utc) if record.next_start and alive else None
    return {
        "name": record.name, "type": "schedule", "schedule": record.cron, "configuration": record.configuration,
        "backend": record.backend, "status": "scheduled" if alive else
        f"supervisor gone (pid {record.pid}): `dstack-iac stop {record.name}`, then run it again",
        "next_start": f"{upcoming:%Y-%m-%d %H:%M}" if upcoming else None, "runs_started": record.runs_started,
        "skipped": record.skipped, "last_exit_code": record.last_exit_code, "pid": record.pid,
    }


def describe_next(cron: list[str], now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    upcoming = next_start(cron, now)
    seconds = int((upcoming - now).total_seconds())
    return f"next start {upcoming:%Y-%m-%d %H:%M} UTC (in {_duration(seconds)})"


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _claim(name: str) -> int:
    """The registration's lock, held by its supervisor; ScheduleTaken when another holds it."""
    ensure_private_dir(schedules_dir())
    fd = os.open(schedules_dir() / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ScheduleTaken(f"a schedule named {name!r} is registered already: `dstack-iac stop {name}` "
                            "unregisters it") from None
    return fd


def serve_schedule(request, answer: Callable[[dict], None], detach_output: Callable[[Path], None]) -> int:
    """The supervisor of a schedule: register, tell the CLI, then start a run at each trigger."""
    from dstack_iac.runs.supervisor import supervise_run

    plan = request.plan
    name = plan.run_name
    try:
        fd = _claim(name)
        if runs.owner_alive(name):
            raise ScheduleTaken(f"a run named {name!r} is active: stop it first (`dstack-iac stop {name}`), or "
                                "name the schedule otherwise")
    except DstackIacError as exc:
        answer({"ok": False, "message": exc.render(), "exit_status": int(exc.exit_status)})
        return int(exc.exit_status)
    record = ScheduleRecord(name=name, cron=list(request.schedule), configuration=plan.configuration_path,
                            backend=plan.backend, created_at=time.time(), pid=os.getpid(),
                            started=processes.start_time(os.getpid()),
                            next_start=next_start(request.schedule).timestamp())
    save(record)
    answer({"ok": True, "pid": os.getpid()})
    log = schedules_dir() / f"{name}.log"
    detach_output(log)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())

    def say(text: str) -> None:
        print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC {text}", flush=True)

    try:
        while not stop.is_set():
            upcoming = next_start(record.cron)
            record = record.model_copy(update={"next_start": upcoming.timestamp()})
            save(record)
            while not stop.wait(min(30.0, max(0.0, upcoming.timestamp() - time.time()))):
                if time.time() >= upcoming.timestamp():
                    break
            if stop.is_set() or load(name) is None:
                break
            if runs.owner_alive(name):
                record = record.model_copy(update={"skipped": record.skipped + 1})
                save(record)
                say(f"{upcoming:%H:%M} trigger skipped: a run named {name} is still active")
                continue
            say(f"{upcoming:%H:%M} trigger: starting run {name}")
            record = record.model_copy(update={"runs_started": record.runs_started + 1,
                                               "last_started_at": time.time()})
            save(record)
            code, signalled = _one_run(request, plan, supervise_run, log, say)
            if load(name) is not None:
                record = record.model_copy(update={"last_exit_code": code})
                save(record)
            # A signal this process got while the run had its handlers was for the schedule too
            # (`stop`, a shutdown); a run whose own commands exit 129/130/143 is just a run.
            if signalled:
                break
    finally:
        _record_path(name).unlink(missing_ok=True)
        os.close(fd)
        say(f"Schedule {name} unregistered")
    return 0


def _one_run(request, plan, supervise_run, log: Path, say) -> tuple[int, bool]:
    """One run with the attached lifecycle; its messages go to its own events log (for attach).
    Its exit code, and whether this process was signalled while the run was going."""
    from dstack_iac.runs.supervisor import DetachedRequest, EVENTS_FILE, _detach_output

    started: list = []

    def claimed(run) -> None:
        started.append(run)
        _detach_output(run.run_dir / EVENTS_FILE)

    try:
        code = supervise_run(DetachedRequest(plan=plan, archive=request.archive), on_claimed=claimed)
    except DstackIacError as exc:  # the name is held by a run that was abandoned: nothing was created
        code = int(exc.exit_status)
        _detach_output(log)
        say(f"the run could not start: {exc.render()}")
        return code, False
    _detach_output(log)
    say(f"run {plan.run_name} ended with exit code {code}")
    return code, any(run.interrupts.requested is not None for run in started)


def unregister(name: str, say: Callable[[str], None], timeout: float = 300.0) -> bool:
    """End the schedule `name` (and the run it has in progress); False when there is none."""
    record = load(name)
    if record is None:
        return False
    _record_path(name).unlink(missing_ok=True)
    if record.alive:
        os.kill(record.pid, signal.SIGTERM)
        say(f"Asked the supervisor of schedule {name} (pid {record.pid}) to end...")
        deadline = time.monotonic() + timeout
        while record.alive and time.monotonic() < deadline:
            time.sleep(0.2)
    return True
