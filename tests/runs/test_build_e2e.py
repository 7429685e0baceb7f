"""`--build` end to end on the local backend, through the CLI, with one task directory: the
build commands do not run without --build; the first --build builds and keeps the venv; the
next reuses it without running them; a changed requirements.txt builds again; --force-build
builds anyway. The packages are wheels the test makes, installed from the task's own
directory: no network, and nothing from other tests' caches."""

from __future__ import annotations

import base64
import hashlib
import re
import time
import zipfile
from pathlib import Path

import pytest

from tests.helpers import assert_nothing_left, dstack, write_task

pytestmark = pytest.mark.e2e

TASK = """build:
  - echo build-commands-ran
  - pip install --no-index --find-links wheels -r requirements.txt
commands:
  - python -c "import importlib.util as u; print('installed', *[n for n in ('tinyalpha', 'tinybeta') if u.find_spec(n)])"
"""


def make_wheel(directory: Path, name: str, version: str = "1.0") -> None:
    """A pure-Python wheel of one module (what a build backend would make, without one)."""
    dist_info = f"{name}-{version}.dist-info"
    files = {f"{name}.py": f"VERSION = {version!r}\n",
             f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(directory / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
        wheel.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")


def test_build_is_kept_reused_rebuilt_on_a_changed_input_and_forced(e2e_home, tmp_path):
    make_wheel(tmp_path / "wheels", "tinyalpha")
    make_wheel(tmp_path / "wheels", "tinybeta")
    (tmp_path / "requirements.txt").write_text("tinyalpha\n")
    write_task(tmp_path, TASK)
    wheelhouse = {"DSTACK_IAC_WHEELHOUSE": str(tmp_path.parent / f"{tmp_path.name}-wheelhouse")}

    def run(*flags: str):
        started = time.monotonic()
        result = dstack(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y", *flags,
                        env=wheelhouse)
        assert result.returncode == 0, result.stdout + result.stderr
        names.append(re.search(r"Run (\S+) succeeded", result.stderr).group(1))
        return result.stdout, time.monotonic() - started

    names: list[str] = []

    out, _ = run()
    assert "build-commands-ran" not in out and "Building" not in out
    assert "installed\n" in out, "without --build nothing was installed"

    out, miss = run("--build")
    [key] = re.findall(r"Building the environment (\w+)\n", out)
    assert "build-commands-ran" in out and f"Stored the built environment {key}" in out
    assert "installed tinyalpha\n" in out

    out, hit = run("--build")
    assert names[-1] != names[-2], "another run, so another venv path: the kept venv is moved to it"
    assert f"Reusing the pre-built environment {key} (the build commands do not run)" in out
    assert "build-commands-ran" not in out and "Building" not in out
    assert "installed tinyalpha\n" in out
    print(f"\n--build: miss {miss:.1f}s, hit {hit:.1f}s")

    (tmp_path / "requirements.txt").write_text("tinyalpha\ntinybeta\n")
    out, _ = run("--build")
    [changed_key] = re.findall(r"Building the environment (\w+)\n", out)
    assert changed_key != key and "build-commands-ran" in out
    assert "installed tinyalpha tinybeta\n" in out

    out, _ = run("--force-build")
    assert f"Building the environment {changed_key} (--force-build)" in out and "build-commands-ran" in out
    assert "installed tinyalpha tinybeta\n" in out
    assert_nothing_left(e2e_home)
