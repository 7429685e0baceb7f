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


def dstack(home: Path, *args: str, timeout: float = 300, cwd: Path | None = None, env: dict | None = None,
           input: str | None = None):
    return run_cli(*args, cwd=cwd, env={"DSTACK_IAC_HOME": str(home), **(env or {})}, timeout=timeout, input=input)


def spawn(home: Path, *args: str, cwd: Path | None = None, env: dict | None = None,
          new_session: bool = False) -> subprocess.Popen:
    full_env = {**os.environ, "DSTACK_IAC_HOME": str(home), "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    # No stdin: a CLI that asks would wait for the test's terminal.
    return subprocess.Popen([*CLI, *args], cwd=cwd or REPO, env=full_env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            start_new_session=new_session)


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


class OutputReader:
    """A process's output read in a thread: wait for a line with a deadline (never hang a test)."""

    def __init__(self, process: subprocess.Popen):
        import queue
        import threading

        self.process = process
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 60, since: int = 0) -> str:
        """The first line containing `text` (among those read, from index `since`, then new ones);
        AssertionError after `timeout`."""
        import queue

        for line in self.lines[since:]:
            if text in line:
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} did not appear within {timeout}s; output:\n{''.join(self.lines)[-3000:]}")

    def rest(self, timeout: float = 60) -> str:
        """Everything until the process exits."""
        self.process.wait(timeout=timeout)
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                return "".join(self.lines)
            self.lines.append(line)


def wait_for(predicate, timeout: float, what: str, every: float = 0.2):
    """Poll `predicate` until it returns something truthy (returned), else fail saying `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} within {timeout}s")
