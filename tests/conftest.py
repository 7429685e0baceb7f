"""Shared fixtures: an isolated state dir per test, and the CLI as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "dstack_iac"]


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "dstack-home"
    monkeypatch.setenv("DSTACK_IAC_HOME", str(home))
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    return home


def assert_valid_bash(text: str, directory: Path) -> None:
    """`bash -n`, and `shellcheck -S warning` when it is installed."""
    import shutil

    path = directory / "check.sh"
    path.write_text(text)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    if shutil.which("shellcheck"):
        checked = subprocess.run(["shellcheck", "-S", "warning", str(path)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120, **kwargs):
    """Run `dstack-iac ARGS` in a subprocess; returns the CompletedProcess (text)."""
    full_env = {**os.environ, **(env or {}), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [*CLI, *args], cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout, **kwargs
    )


# --- end-to-end runs on the local backend -----------------------------------------------------

def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line or environment mentions `text` (e.g. a test's state dir)."""
    found = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes() or needle in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


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


@pytest.fixture(scope="session")
def e2e_root(tmp_path_factory):
    """Parent of every end-to-end test's state dir. After the whole suite, nothing may remain:
    no stack in any state dir, and no process started by the tests."""
    root = tmp_path_factory.mktemp("e2e")
    yield root
    import time

    deadline = time.monotonic() + 10
    while processes_mentioning(str(root)) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = processes_mentioning(str(root))
    assert left == [], "processes started by the tests are still alive:\n" + describe(left)
    assert stack_files(root) == [], "stacks were left behind"


@pytest.fixture
def e2e_home(e2e_root, request) -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix=request.node.originalname[:40] + "-", dir=e2e_root))


def dstack(home: Path, *args: str, timeout: float = 300, cwd: Path | None = None, env: dict | None = None):
    return run_cli(*args, cwd=cwd, env={"DSTACK_IAC_HOME": str(home), **(env or {})}, timeout=timeout)


def spawn(home: Path, *args: str, cwd: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "DSTACK_IAC_HOME": str(home), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.Popen([*CLI, *args], cwd=cwd or REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
