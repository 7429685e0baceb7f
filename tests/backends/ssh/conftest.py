"""Fixtures of the ssh backend's end-to-end tests: existing hosts shared by a module (they are
never changed by a test that passes: each run must leave them as it found them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.backends.ssh.existing_hosts import Hosts
from tests.helpers import dstack


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """Four hosts: box-1 and box-2 (a pair for multi-node runs), box-3, and box-4 with two
    (stand-in) A100s."""
    found = Hosts(tmp_path_factory.mktemp("hosts"), 4, gpus=(3,))
    yield found
    found.stop()


def create_fleet(home: Path, path: Path) -> None:
    created = dstack(home, "fleet", "create", "-f", str(path), "-y")
    assert created.returncode == 0, created.stdout + created.stderr


@pytest.fixture
def fleets(e2e_home):
    """Create fleets in the test's state dir (`fleets(path)`); whatever a failing test left (its
    runs, its fleets) is stopped and deleted afterwards, so that one failure does not spill into
    the others."""
    yield lambda path: create_fleet(e2e_home, path)
    listed = dstack(e2e_home, "ps", "--all", "--json")
    for run in json.loads(listed.stdout or "[]") if listed.returncode == 0 else []:
        if run.get("status") not in ("done", "failed", "stopped"):
            dstack(e2e_home, "stop", run["name"])
    listed = dstack(e2e_home, "fleet", "list", "--json")
    for fleet in json.loads(listed.stdout or "[]") if listed.returncode == 0 else []:
        dstack(e2e_home, "fleet", "delete", fleet["name"], "-y")
