"""Which Python interpreter creates a local node's virtualenv."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dstack_iac.errors import BadInput


class InterpreterNotFound(BadInput):
    pass


def _version_of(executable: str) -> str | None:
    try:
        out = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def base_interpreter() -> str:
    """The interpreter behind the one running dstack-iac (outside its virtualenv)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def find_interpreter(version: str | None) -> str:
    """An interpreter for `python: X.Y`; the caller's own version when unset (as dstack does)."""
    if version is None:
        return base_interpreter()
    candidates = [base_interpreter(), shutil.which(f"python{version}") or ""]
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}*/bin/python{version}"), reverse=True)
    candidates += [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and _version_of(candidate) == version:
            return candidate
    raise InterpreterNotFound(
        f"python: {version!r} is not installed on this machine (looked for python{version} on PATH and in pyenv); "
        f"install it (e.g. `pyenv install {version}` or `apt-get install python{version}`), or drop `python:` to use "
        f"{_version_of(base_interpreter())}"
    )
