"""What outlives a dead CLI: the lease ends the nodes by themselves, `ps` says so, and `stop` and
`gc` remove whatever is left, even what no stack knows any more."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from dstack_iac.paths import run_dir
from tests.helpers import (assert_nothing_left, describe, dstack, processes_mentioning, spawn,
                           stack_files, write_task)

pytestmark = pytest.mark.e2e
LEASE = 20
GRACE = 10  # the watchdog checks every second and gives the task 3 s after SIGTERM


def started_then_killed(home, tmp_path, name: str, *extra: str):
    write_task(tmp_path, f"name: {name}\nnodes: 2\ncommands:\n  - echo started\n  - sleep 600\n")
    process = spawn(home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y", *extra)
    read_until_both(process)
    process.kill()
    process.wait()
    return process


def read_until_both(process) -> None:
    seen = set()
    for line in process.stdout:
        if line.strip().endswith("started"):
            seen.add(line.split()[0])
        if len(seen) == 2:
            return


def test_kill_9_of_the_cli_ends_the_nodes_within_the_lease(e2e_home, tmp_path):
    started_then_killed(e2e_home, tmp_path, "leased", "--lease", f"{LEASE}s")
    killed = time.monotonic()
    nodes = str(run_dir("leased") / "nodes")
    assert processes_mentioning(nodes), "the nodes outlive the CLI at first"
    assert "orphaned" in dstack(e2e_home, "ps").stdout
    deadline = killed + LEASE + GRACE + 30
    while processes_mentioning(nodes) and time.monotonic() < deadline:
        time.sleep(0.5)
    ended_after = time.monotonic() - killed
    left = processes_mentioning(nodes)
    assert left == [], describe(left)
    assert ended_after <= LEASE + GRACE, f"the nodes ended {ended_after:.1f}s after the CLI died"
    print(f"\nlease {LEASE}s: every process of the run ended {ended_after:.1f}s after kill -9")
    ps = dstack(e2e_home, "ps")
    assert "expired (clean up: dstack-iac stop leased)" in ps.stdout
    assert dstack(e2e_home, "stop", "leased").returncode == 0
    assert_nothing_left(e2e_home)


def test_gc_removes_a_run_whose_stack_was_deleted_by_hand(e2e_home, tmp_path):
    started_then_killed(e2e_home, tmp_path, "unstacked")
    [stack] = stack_files(e2e_home)
    stack.unlink()  # somebody "cleaned up" the state by hand; the nodes still run
    assert processes_mentioning(str(run_dir("unstacked") / "nodes"))
    listed = json.loads(dstack(e2e_home, "gc", "--json").stdout)
    [garbage] = [g for g in listed if g["run"] == "unstacked"]
    assert garbage["why"] == "its owner is gone" and garbage["backend"] == "local"
    assert any(item.startswith("node 0: processes") for item in garbage["leftovers"])
    assert any(item.startswith("node 1: processes") for item in garbage["leftovers"])
    dry = dstack(e2e_home, "gc")
    assert "unstacked" in dry.stdout and "gc --yes" in dry.stderr
    assert processes_mentioning(str(run_dir("unstacked") / "nodes")), "without --yes, gc only lists"
    removed = dstack(e2e_home, "gc", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert_nothing_left(e2e_home)
    assert json.loads(dstack(e2e_home, "gc", "--json").stdout) == []
    assert json.loads(dstack(e2e_home, "ps", "--all", "--json").stdout)[0]["status"] == "stopped"


def test_stop_and_gc_at_once_both_finish_and_leave_nothing(e2e_home, tmp_path):
    started_then_killed(e2e_home, tmp_path, "twice")
    results = {}

    def call(name, *args):
        results[name] = dstack(e2e_home, *args)

    threads = [threading.Thread(target=call, args=("stop", "stop", "twice")),
               threading.Thread(target=call, args=("gc", "gc", "--yes")),
               threading.Thread(target=call, args=("stop again", "stop", "twice"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=200)
    for name, result in results.items():
        assert result.returncode == 0, f"{name}: {result.stderr}"
    assert_nothing_left(e2e_home)


def test_logs_follow_of_an_orphaned_run_returns(e2e_home, tmp_path):
    started_then_killed(e2e_home, tmp_path, "gone")
    followed = dstack(e2e_home, "logs", "gone", "-f", timeout=30)
    assert followed.returncode == 0 and "[0] started" in followed.stdout
    assert dstack(e2e_home, "stop", "gone").returncode == 0
    assert_nothing_left(e2e_home)


def test_a_stop_while_the_stack_is_created_leaves_nothing(e2e_home, tmp_path):
    write_task(tmp_path, "name: early\nnodes: 3\ncommands:\n  - sleep 600\n")
    process = spawn(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    read_until_marker(process, "Provisioning")
    stopped = dstack(e2e_home, "stop", "early")
    assert stopped.returncode == 0, stopped.stderr
    process.communicate(timeout=60)
    assert process.returncode == signal.SIGTERM + 128
    assert_nothing_left(e2e_home)


def read_until_marker(process, marker: str) -> None:
    for line in process.stdout:
        if marker in line:
            return
