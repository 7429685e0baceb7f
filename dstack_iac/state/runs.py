"""Run records in the state dir: what `ps`, `logs`, `stop` and `gc` read.

Each run has `runs/<name>/run.json`, written atomically by the process that owns the run (the
attached CLI, or a detached run's supervisor). Ownership is an exclusive `flock` on
`runs/<name>.lock`, held for as long as the owner lives: the kernel releases it when the owner
dies, however it dies, so "is the owner alive?" never depends on a pid that may be reused, and
two processes claiming one name cannot both win.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from pydantic import BaseModel

from dstack_iac.errors import BadInput, Conflict, EnvironmentProblem
from dstack_iac.paths import ensure_private_dir, run_dir, runs_dir, write_private


class RunStatus(str, Enum):
    PROVISIONING = "provisioning"
    PENDING = "pending"  # waiting for capacity: `retry` on no-capacity, between attempts
    RUNNING = "running"
    TERMINATING = "terminating"
    DONE = "done"
    FAILED = "failed"
    STOPPED = "stopped"
    ORPHANED = "orphaned"  # derived: the owner died while the run was active
    EXPIRED = "expired"  # derived: orphaned, and past its lease (its nodes have ended themselves)

    @property
    def active(self) -> bool:
        return self in (RunStatus.PROVISIONING, RunStatus.PENDING, RunStatus.RUNNING, RunStatus.TERMINATING,
                        RunStatus.ORPHANED, RunStatus.EXPIRED)

    @property
    def abandoned(self) -> bool:
        return self in (RunStatus.ORPHANED, RunStatus.EXPIRED)


class RunNameTaken(BadInput):
    pass


class RunBusy(Conflict):
    pass


class RunRecord(BaseModel):
    name: str
    status: RunStatus
    backend: str
    nodes: int
    configuration: str
    owner_pid: int
    owner: str
    created_at: float
    finished_at: float | None = None
    exit_code: int | None = None
    message: str = ""
    volumes: list[str] = []  # network volumes the run mounts: deleting them is refused meanwhile
    lease_seconds: int | None = None
    lease_renewed_at: float | None = None
    # Where the run lives, for everyone sharing the Pulumi backend (state/backend_records.py).
    host: str = ""  # the machine that started it, as people name it
    host_id: str = ""  # the same machine, as providers check it (state/identity.py)
    owner_started: int | None = None  # the owner's start time: with owner_pid, a pid reuse cannot fake
    price_per_hour: float | None = None  # the plan's price, all nodes
    run_dir: str = ""  # the run's directory on its host
    generation: int = 0  # its entry in the backend's run index (0: not published)
    priority: int = 0  # the task's `priority`: who gets capacity first when runs wait for it

    @property
    def effective_status(self) -> RunStatus:
        return self.status_given(owner_alive(self.name))

    def status_given(self, alive: bool) -> RunStatus:
        """The status as seen by whoever knows whether the owner is `alive`."""
        if not self.status.active or self.status.abandoned or alive:
            return self.status
        renewed = self.lease_renewed_at or self.created_at
        if self.lease_seconds and time.time() > renewed + self.lease_seconds:
            return RunStatus.EXPIRED
        return RunStatus.ORPHANED

    @property
    def directory(self) -> Path:
        return run_dir(self.name)

    @property
    def log_path(self) -> Path:
        return self.directory / "run.log"


def _lock_path(name: str) -> Path:
    return runs_dir() / f"{name}.lock"


def owner_alive(name: str) -> bool:
    """Whether some process holds the run's ownership lock (this one included)."""
    try:
        fd = os.open(_lock_path(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class RunClaim:
    """The ownership of a run name, held until `release()` or the owner's death."""

    def __init__(self, name: str, fd: int):
        self.name = name
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def fd(self) -> int | None:
        return self._fd


def _open_lock(name: str) -> int:
    ensure_private_dir(runs_dir())
    path = _lock_path(name)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise EnvironmentProblem(f"the run lock {path} cannot be opened ({exc.strerror}): something other than "
                                 "dstack-iac put a file there", hint="remove it, or use another state dir") from None


def _write_holder(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)


def lock_holder(name: str) -> int | None:
    """The pid that holds the run's lock (its owner, or a `stop`/`gc` cleaning it up), or None."""
    if not owner_alive(name):
        return None
    try:
        return int(_lock_path(name).read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def take_over(name: str, timeout: float = 300.0) -> RunClaim:
    """Hold the run's lock to clean it up, waiting for whoever holds it (another `stop`, `gc`),
    so that clean-ups never run twice at once."""
    fd = _open_lock(name)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise RunBusy(f"{name} is being handled by process {lock_holder(name)}; try again when it is done") \
                    from None
            time.sleep(0.2)
    _write_holder(fd)
    return RunClaim(name, fd)


def claim(record: RunRecord, note: Callable[[str], None] | None = None) -> RunClaim:
    """Own the run name (atomic), or RunNameTaken saying who has it. A finished run of the same
    name makes way: its leftovers (log, keys) are removed. `note` hears, once, that the backend
    keeps no run records (the run goes on, recorded here only)."""
    fd = _open_lock(record.name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunNameTaken(f"a run named {record.name!r} is already active: choose another name, or stop it with "
                           f"`dstack-iac stop {record.name}`") from None
    _write_holder(fd)
    existing = load(record.name)
    if existing is not None and existing.status.active:
        os.close(fd)
        raise RunNameTaken(f"a run named {record.name!r} was abandoned by its owner and still holds resources: "
                           f"clean it up with `dstack-iac stop {record.name}`, or choose another name")
    from dstack_iac.state import backend_records

    try:
        # The name is the backend's too: exactly one claimant wins it (RunNameTaken otherwise).
        backend_records.claim(record)
    except BaseException:
        os.close(fd)
        raise
    if not record.generation and note is not None:
        unshared = backend_records.no_records_note()
        if unshared:
            note(unshared)
    if existing is not None or record.directory.exists():
        shutil.rmtree(record.directory, ignore_errors=True)
    ensure_private_dir(record.directory)
    save(record)
    return RunClaim(record.name, fd)


def save(record: RunRecord) -> None:
    """This machine's record, then the backend's (which everyone sharing the backend reads)."""
    write_private(record.directory / "run.json", record.model_dump_json(indent=2))
    if record.generation:
        from dstack_iac.state import backend_records

        backend_records.publish(record)


def load(name: str) -> RunRecord | None:
    try:
        return RunRecord.model_validate_json((run_dir(name) / "run.json").read_text())
    except (OSError, ValueError):
        return None


def all_runs() -> list[RunRecord]:
    try:
        entries = [p.name for p in runs_dir().iterdir() if p.is_dir()]
    except OSError:
        return []
    records = [load(name) for name in entries]
    return sorted((r for r in records if r), key=lambda r: r.created_at, reverse=True)


def active_names() -> set[str]:
    return {r.name for r in all_runs() if r.effective_status.active}


def outranking(record: RunRecord, others: list[RunRecord]) -> list[RunRecord]:
    """The runs that get capacity before `record`: waiting for it on the same backend, with a
    higher priority, and still owned by a live process (an orphan waits for nobody)."""
    return [other for other in others
            if other.name != record.name and other.backend == record.backend and other.priority > record.priority
            and other.status == RunStatus.PENDING and other.effective_status == RunStatus.PENDING]


def finish(record: RunRecord, status: RunStatus, exit_code: int | None, message: str = "") -> RunRecord:
    updated = record.model_copy(update={"status": status, "exit_code": exit_code, "finished_at": time.time(),
                                        "message": message})
    save(updated)
    return updated


def hand_over(claim: RunClaim, record: RunRecord) -> None:
    """Make `record.owner_pid` the run's owner: the process that inherited the claim's lock (a
    detached run's supervisor, from the CLI that claimed the name) holds it from now on."""
    os.ftruncate(claim.fd, 0)
    os.pwrite(claim.fd, str(record.owner_pid).encode(), 0)
    save(record)
