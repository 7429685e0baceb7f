"""Run records in the state dir: what `ps`, `logs` and `stop` read.

Each run has `runs/<name>/run.json`, written atomically by the CLI process that owns the run.
A run whose record says it is active but whose owner process is gone is orphaned.
"""

from __future__ import annotations

import os
import shutil
import time
from enum import Enum
from pathlib import Path

from pydantic import BaseModel

from dstack_iac.infra.local.processes import alive
from dstack_iac.paths import ensure_private_dir, run_dir, runs_dir


class RunStatus(str, Enum):
    PROVISIONING = "provisioning"
    RUNNING = "running"
    TERMINATING = "terminating"
    DONE = "done"
    FAILED = "failed"
    STOPPED = "stopped"
    ORPHANED = "orphaned"  # derived: the owner died while the run was active

    @property
    def active(self) -> bool:
        return self in (RunStatus.PROVISIONING, RunStatus.RUNNING, RunStatus.TERMINATING, RunStatus.ORPHANED)


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

    @property
    def effective_status(self) -> RunStatus:
        if self.status.active and self.status != RunStatus.ORPHANED and not alive(self.owner_pid):
            return RunStatus.ORPHANED
        return self.status

    @property
    def directory(self) -> Path:
        return run_dir(self.name)

    @property
    def log_path(self) -> Path:
        return self.directory / "run.log"


def save(record: RunRecord) -> None:
    directory = ensure_private_dir(record.directory)
    tmp = directory / f"run.json.{os.getpid()}.tmp"
    tmp.write_text(record.model_dump_json(indent=2))
    tmp.replace(directory / "run.json")


def claim(record: RunRecord) -> bool:
    """Create the run's record unless an active run already has the name (atomic)."""
    ensure_private_dir(runs_dir())
    existing = load(record.name)
    if existing is not None and existing.effective_status.active:
        return False
    directory = record.directory
    if existing is not None:
        # A finished run of the same name: its leftovers (logs, keys) make way for the new run.
        shutil.rmtree(directory, ignore_errors=True)
    ensure_private_dir(directory)
    lock = directory / "claim.lock"
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process claimed it in between, or a finished run left the lock: re-check.
        current = load(record.name)
        if current is not None and current.effective_status.active:
            return False
        lock.unlink(missing_ok=True)
        return claim(record)
    os.close(fd)
    save(record)
    lock.unlink(missing_ok=True)
    return True


def load(name: str) -> RunRecord | None:
    path = run_dir(name) / "run.json"
    try:
        return RunRecord.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def all_runs() -> list[RunRecord]:
    if not runs_dir().exists():
        return []
    records = [load(p.name) for p in runs_dir().iterdir() if p.is_dir()]
    return sorted((r for r in records if r), key=lambda r: r.created_at, reverse=True)


def active_names() -> set[str]:
    return {r.name for r in all_runs() if r.effective_status.active}


def finish(record: RunRecord, status: RunStatus, exit_code: int | None, message: str = "") -> RunRecord:
    updated = record.model_copy(update={"status": status, "exit_code": exit_code, "finished_at": time.time(),
                                        "message": message})
    save(updated)
    return updated
