"""Shared fixtures. Every test gets its own state dir; the session gets its own caches (the
user's are never touched), sharing only the engine and downloaded wheels, which never change."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.helpers import describe, processes_mentioning, stack_files

REAL_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def pytest_configure(config):
    """Isolate caches for the whole session, before any test imports the package's paths."""
    from dstack_iac.infra import engine

    cli = engine.find_pulumi()
    if cli is not None and not os.environ.get(engine.PULUMI_ENV):
        os.environ[engine.PULUMI_ENV] = str(cli.path)
    session_cache = Path(tempfile.mkdtemp(prefix="dstack-iac-test-cache-"))
    os.environ["XDG_CACHE_HOME"] = str(session_cache)
    os.environ.setdefault("DSTACK_IAC_WHEELHOUSE", str(REAL_CACHE / "dstack-iac" / "test-wheels"))
    (session_cache / "dstack-iac").mkdir(parents=True, exist_ok=True)
    engine.find_pulumi.cache_clear()


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch) -> Path:
    """This test's own state dir and Pulumi file backend."""
    home = tmp_path / "dstack-home"
    monkeypatch.setenv("DSTACK_IAC_HOME", str(home))
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    return home


@pytest.fixture(scope="session")
def e2e_root(tmp_path_factory):
    """Parent of every end-to-end test's state dir. After the whole suite, nothing may remain:
    no stack in any state dir, and no process started by the tests."""
    import time

    root = tmp_path_factory.mktemp("e2e")
    yield root
    deadline = time.monotonic() + 10
    while processes_mentioning(str(root)) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = processes_mentioning(str(root))
    assert left == [], "processes started by the tests are still alive:\n" + describe(left)
    assert stack_files(root) == [], "stacks were left behind"


@pytest.fixture
def e2e_home(e2e_root, request, monkeypatch) -> Path:
    home = Path(tempfile.mkdtemp(prefix=request.node.originalname[:40] + "-", dir=e2e_root))
    monkeypatch.setenv("DSTACK_IAC_HOME", str(home))
    return home
