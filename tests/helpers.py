"""Helpers the tests share: the CLI as a user runs it, and what a run may leave behind.

Fixtures live in conftest.py; everything here is plain functions, imported explicitly."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "dstack_iac"]
TASK_HEADER = "type: task\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\n"


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120, **kwargs):
    """Run `dstack-iac ARGS` in a subprocess; returns the CompletedProcess (text). A variable
    given as None in `env` is removed from the environment."""
    full_env = {**os.environ, **(env or {}), "COLUMNS": "200", "NO_COLOR": "1"}
    full_env = {key: value for key, value in full_env.items() if value is not None}
    return subprocess.run([*CLI, *args], cwd=cwd or REPO, env=full_env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def dstack(home: Path, *args: str, timeout: float = 300, cwd: Path | None = None, env: dict | None = None):
    return run_cli(*args, cwd=cwd, env={"DSTACK_IAC_HOME": str(home), **(env or {})}, timeout=timeout)


def spawn(home: Path, *args: str, cwd: Path | None = None, env: dict | None = None,
          new_session: bool = False) -> subprocess.Popen:
    full_env = {**os.environ, "DSTACK_IAC_HOME": str(home), "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    return subprocess.Popen([*CLI, *args], cwd=cwd or REPO, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=new_session)


def write_task(directory: Path, body: str, name: str = "t.dstack.yml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(TASK_HEADER + body)
    return path


def read_until(process: subprocess.Popen, marker: str) -> list[str]:
    """Read the CLI's output until a line equal to `marker` (the task is running by then)."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.strip() == marker:
            break
    return lines


def assert_valid_bash(text: str, directory: Path) -> None:
    """`bash -n`, and `shellcheck -S warning` when it is installed."""
    path = directory / "check.sh"
    path.write_text(text)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    if shutil.which("shellcheck"):
        checked = subprocess.run(["shellcheck", "-S", "warning", str(path)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout


# --- what a run may leave behind ---------------------------------------------------------------

def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line or environment mentions `text` (e.g. a test's state dir)."""
    from dstack_iac.state.processes import mentioning

    return mentioning(text)


def describe(pids: list[int]) -> str:
    """Command lines of `pids`, for assertion messages."""
    lines = []
    for pid in pids:
        try:
            lines.append(f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:300])
        except OSError:
            lines.append(f"{pid}: (gone)")
    return "\n".join(lines)


def stack_files(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if ".pulumi/stacks" in p.as_posix() and p.suffix == ".json"]


def lock_files(home: Path) -> list[Path]:
    return [p for p in home.rglob("*") if ".pulumi/locks" in p.as_posix() and p.is_file()]


def wait_for_no_processes(text: str, seconds: float = 10) -> list[int]:
    deadline = time.monotonic() + seconds
    while processes_mentioning(text) and time.monotonic() < deadline:
        time.sleep(0.2)
    return processes_mentioning(text)


def assert_nothing_left(home: Path) -> None:
    """No stack, no stack lock, no process and no node directory of any run in `home`."""
    assert stack_files(home) == [], stack_files(home)
    assert lock_files(home) == [], lock_files(home)
    left = wait_for_no_processes(str(home), seconds=5)
    assert left == [], describe(left)
    assert list(home.glob("runs/*/nodes/*")) == []
    assert list(home.glob("runs/*/id_ed25519*")) == [], "the run's keys are removed with it"
