"""Two users sharing one Pulumi backend: a real S3 API (moto's server on 127.0.0.1), real runs on
the local backend, two state dirs and two owners, through the CLI as people run it. They see
each other's runs, a name in use is refused, a run is stopped only where and by whom it may be,
a run orphaned by a killed CLI is cleaned up by the other user, and logs work from elsewhere."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, assert_nothing_left, dstack, processes_mentioning, read_until, spawn, write_task
from tests.s3 import moto_server, s3_backend, stacks_in  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e
HELLO = REPO / "examples" / "hello"
FAST_HEARTBEAT = {"DSTACK_IAC_HEARTBEAT_SECONDS": "0.5"}


@pytest.fixture
def bob_home(e2e_root) -> Path:
    return Path(tempfile.mkdtemp(prefix="bob-", dir=e2e_root))


def as_alice(home: Path, *args: str, **kwargs):
    return dstack(home, *args, env={"DSTACK_IAC_OWNER": "alice", **FAST_HEARTBEAT, **kwargs.pop("env", {})}, **kwargs)


def as_bob(home: Path, *args: str, **kwargs):
    return dstack(home, *args, env={"DSTACK_IAC_OWNER": "bob", **FAST_HEARTBEAT, **kwargs.pop("env", {})}, **kwargs)


def ps_of(home: Path, runner, *flags: str) -> list[dict]:
    result = runner(home, "ps", "--all", "--json", *flags)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_two_users_see_refuse_and_clean_up_each_others_runs(e2e_home, bob_home, tmp_path, s3_backend):
    alice_home = e2e_home
    write_task(tmp_path, "name: shared\ncommands:\n  - echo started\n  - sleep 600\n")
    alice = spawn(alice_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y",
                  env={"DSTACK_IAC_OWNER": "alice", **FAST_HEARTBEAT})
    read_until(alice, "started")

    # Bob sees alice's run, whose it is and where.
    [run] = [r for r in ps_of(bob_home, as_bob) if r["name"] == "shared"]
    assert (run["owner"], run["status"], run["backend"]) == ("alice", "running", "local")
    assert run["host"] and run["host_id"]
    assert [r["name"] for r in ps_of(bob_home, as_bob, "--mine")] == []
    table = as_bob(bob_home, "ps").stdout
    assert "shared" in table and "alice" in table and run["host"] in table

    # The name is the backend's: bob cannot start another `shared`.
    taken = as_bob(bob_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    assert taken.returncode == 2, taken.stderr
    assert "a run named 'shared' is already active (alice on" in taken.stderr
    assert "nothing was provisioned" in taken.stderr

    # From another machine a local run is not stoppable at all: its nodes are processes here.
    elsewhere = as_bob(bob_home, "stop", "shared", env={"DSTACK_IAC_HOST_ID": "bobs-laptop"})
    assert elsewhere.returncode == 6, elsewhere.stderr
    assert "its nodes are processes of that machine" in elsewhere.stderr
    assert f"run `dstack-iac stop shared` on {run['host']}" in elsewhere.stderr
    # Here, alice's live run is hers: only --force stops it.
    refused = as_bob(bob_home, "stop", "shared")
    assert refused.returncode == 6, refused.stderr
    assert "belongs to alice on" in refused.stderr and "whose process is alive" in refused.stderr
    assert "--force" in refused.stderr
    assert "started" in as_bob(bob_home, "logs", "shared").stdout, "the log is shipped while the run runs"

    # Alice's CLI is killed: the run is orphaned, and bob cleans it up from his state dir.
    alice.kill()
    alice.wait()
    [run] = [r for r in ps_of(bob_home, as_bob) if r["name"] == "shared"]
    assert run["status"] == "orphaned"
    assert processes_mentioning(str(alice_home / "runs")), "alice's node is still up before the stop"
    stopped = as_bob(bob_home, "stop", "shared")
    assert stopped.returncode == 0, stopped.stderr
    assert "Destroying the stack of shared (alice on" in stopped.stderr
    assert_nothing_left(alice_home)
    assert stacks_in(s3_backend["server"], s3_backend["bucket"]) == []
    [run] = ps_of(alice_home, as_alice)
    assert run["status"] == "stopped" and "bob on" in run["message"]


def test_logs_of_a_finished_run_and_a_forced_stop_from_the_other_user(e2e_home, bob_home, tmp_path, s3_backend):
    alice_home = e2e_home
    done = as_alice(alice_home, "run", str(HELLO), "-y")
    assert done.returncode == 0, done.stderr
    # From another machine: the log the backend kept at the end of the run.
    far = as_bob(bob_home, "logs", "hello", env={"DSTACK_IAC_HOST_ID": "bobs-laptop"})
    assert far.returncode == 0, far.stderr
    assert "Hello from node 0 of 1 (hello)" in far.stdout
    # --since and --node read the shipped log as the owner's machine reads its own.
    since = as_bob(bob_home, "logs", "hello", "--since", "1h", "--node", "0", env={"DSTACK_IAC_HOST_ID": "bobs-laptop"})
    assert since.returncode == 0 and "Hello from node 0 of 1 (hello)" in since.stdout, since.stderr
    later = as_bob(bob_home, "logs", "hello", "--since", "2099-01-01T00:00:00Z", env={"DSTACK_IAC_HOST_ID": "bobs-laptop"})
    assert later.returncode == 0 and "Hello" not in later.stdout, later.stdout + later.stderr
    no_node = as_bob(bob_home, "logs", "hello", "--node", "1", env={"DSTACK_IAC_HOST_ID": "bobs-laptop"})
    assert no_node.returncode == 2 and "--node 1: hello has 1 node (ranks 0..0)" in no_node.stderr
    [hello] = ps_of(bob_home, as_bob)
    assert (hello["owner"], hello["status"], hello["exit_code"]) == ("alice", "done", 0)

    write_task(tmp_path, "name: long\ncommands:\n  - echo started\n  - sleep 600\n")
    alice = spawn(alice_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y",
                  env={"DSTACK_IAC_OWNER": "alice", **FAST_HEARTBEAT})
    read_until(alice, "started")
    started = time.monotonic()
    forced = as_bob(bob_home, "stop", "long", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "Asked the owner of long (alice on" in forced.stderr
    rest = alice.communicate(timeout=120)[0]
    assert alice.returncode == 143, rest
    assert "Stop requested by bob on" in rest and "Torn down" in rest
    assert time.monotonic() - started < 60
    assert_nothing_left(alice_home)
    assert stacks_in(s3_backend["server"], s3_backend["bucket"]) == []
