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


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120, **kwargs):
    """Run `dstack-iac ARGS` in a subprocess; returns the CompletedProcess (text)."""
    full_env = {**os.environ, **(env or {}), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [*CLI, *args], cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout, **kwargs
    )
