"""Where dstack-iac keeps its state on this machine (one place, so every layer agrees)."""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR_ENV = "DSTACK_IAC_HOME"


def state_dir() -> Path:
    """The user state dir: `$DSTACK_IAC_HOME`, else `~/.dstack-iac`."""
    configured = os.environ.get(STATE_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".dstack-iac"


def cache_dir() -> Path:
    """Per-user cache shared by all state dirs (the Pulumi engine build, the wheel cache)."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "dstack-iac"


WHEELHOUSE_ENV = "DSTACK_IAC_WHEELHOUSE"


def wheelhouse_dir() -> Path:
    """Wheels pip downloaded for local runs, shared by all of them: `$DSTACK_IAC_WHEELHOUSE`,
    else `<cache_dir>/wheels`. Safe to delete at any time."""
    configured = os.environ.get(WHEELHOUSE_ENV)
    return Path(configured).expanduser() if configured else cache_dir() / "wheels"


def runs_dir() -> Path:
    return state_dir() / "runs"


def run_dir(run_name: str) -> Path:
    return runs_dir() / run_name


def volumes_dir() -> Path:
    return state_dir() / "volumes"


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
