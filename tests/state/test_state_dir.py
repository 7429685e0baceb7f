"""The state dir holds keys and secrets: any path works, nothing in it is trusted, a bad one is
a clear error, and a run's name is claimed by exactly one process."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
from pathlib import Path

import pytest

from dstack_iac.errors import ExitStatus
from tests.helpers import REPO, assert_nothing_left, dstack, run_cli

HELLO = REPO / "examples" / "hello"


@pytest.mark.e2e
def test_a_state_dir_with_any_characters_works(tmp_path):
    home = tmp_path / "state a b+c%d#e?f;g ä"
    result = dstack(home, "run", str(HELLO), "-y")
    assert result.returncode == 0, result.stderr
    assert "Hello from node 0 of 1 (hello)" in result.stdout
    assert "Hello from node 0 of 1" in dstack(home, "logs", "hello").stdout
    doctor = dstack(home, "doctor")
    assert doctor.returncode == 0 and "FIX" not in doctor.stdout
    # The engine and the package agree on the path: no percent-encoded twin beside it.
    assert [p.name for p in tmp_path.iterdir()] == [home.name]
    assert_nothing_left(home)


@pytest.mark.e2e
def test_a_relative_state_dir_is_taken_from_the_current_directory(tmp_path):
    result = run_cli("run", str(HELLO), "-y", cwd=tmp_path, env={"DSTACK_IAC_HOME": "relative-home"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "relative-home" / "runs" / "hello" / "run.json").is_file()
    assert_nothing_left(tmp_path / "relative-home")


@pytest.mark.parametrize("make, fragment", [
    (lambda root: (root.write_text("a file"), root)[1], "is not a directory"),
    (lambda root: Path("/sys/kernel"), "cannot be written"),
    (lambda root: (root.mkdir(), os.chown(root, 65534, 65534), root)[2], "belongs to uid 65534, not to you"),
], ids=["a-regular-file", "read-only", "someone-elses"])
def test_an_unusable_state_dir_is_refused_before_anything(tmp_path, make, fragment):
    home = make(tmp_path / "state")
    result = run_cli("run", str(HELLO), "-y", env={"DSTACK_IAC_HOME": str(home)})
    assert result.returncode == ExitStatus.ENVIRONMENT, result.stderr
    assert f"the state dir cannot be used: {home} {fragment}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_planted_symlink_is_never_followed(tmp_path):
    home, elsewhere = tmp_path / "state", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (home / "runs").mkdir(parents=True, mode=0o700)
    home.chmod(0o700)
    (home / "runs" / "hello").symlink_to(elsewhere)
    result = run_cli("run", str(HELLO), "-y", env={"DSTACK_IAC_HOME": str(home)})
    assert result.returncode == ExitStatus.ENVIRONMENT, result.stderr
    assert "is a symlink, which dstack-iac never creates there" in result.stderr
    assert list(elsewhere.iterdir()) == []
    (home / "runs" / "hello").unlink()
    (home / "runs" / "hello.lock").unlink(missing_ok=True)
    (home / "runs" / "hello.lock").symlink_to(elsewhere / "victim")
    result = run_cli("run", str(HELLO), "-y", env={"DSTACK_IAC_HOME": str(home)})
    assert result.returncode == ExitStatus.ENVIRONMENT and "the run lock" in result.stderr
    assert not (elsewhere / "victim").exists()


def test_group_and_world_access_to_the_state_dir_is_taken_away(tmp_path, monkeypatch):
    from dstack_iac.paths import ensure_private_dir, write_private

    home = tmp_path / "state"
    home.mkdir(mode=0o777)
    home.chmod(0o777)
    monkeypatch.setenv("DSTACK_IAC_HOME", str(home))
    write_private(home / "runs" / "x" / "run.json", "{}")
    assert oct(home.stat().st_mode & 0o777) == "0o700"
    assert oct((home / "runs" / "x" / "run.json").stat().st_mode & 0o777) == "0o600"
    assert ensure_private_dir(home / "runs") == home / "runs"


def _claim(home: str, barrier, results) -> None:
    os.environ["DSTACK_IAC_HOME"] = home
    from dstack_iac.state import runs

    record = runs.RunRecord(name="contested", status=runs.RunStatus.PROVISIONING, backend="local", nodes=1,
                            configuration="x", owner_pid=os.getpid(), owner="me", created_at=0.0)
    barrier.wait()
    try:
        claim = runs.claim(record)
        results.put("won")
        barrier.wait()  # hold the claim until every contender has tried
        claim.release()
    except runs.RunNameTaken:
        results.put("lost")
        barrier.wait()


def test_exactly_one_of_many_racing_claims_wins(tmp_path):
    contenders = 8
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(contenders), context.Queue()
    processes = [context.Process(target=_claim, args=(str(tmp_path / "state"), barrier, results))
                 for _ in range(contenders)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    outcomes = sorted(results.get(timeout=5) for _ in range(contenders))
    assert outcomes == ["lost"] * (contenders - 1) + ["won"]


@pytest.mark.e2e
def test_the_node_script_holding_the_env_is_private(e2e_home, tmp_path):
    (tmp_path / "t.dstack.yml").write_text(
        "type: task\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\nenv: [TOKEN=s3cret]\n"
        "commands: ['stat -c %a \"$(dirname $DSTACK_WORKING_DIR)/task.sh\"']\n")
    result = dstack(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    assert result.returncode == 0, result.stderr
    assert "700" in result.stdout.split()
    assert_nothing_left(e2e_home)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MB filesystem of the test's own (a tmpfs, as root), for the state dir."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"the test needs to mount a tmpfs (root): {mounted.stderr}"
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


@pytest.mark.e2e
def test_a_full_disk_never_wedges_the_run(small_disk, tmp_path):
    home = small_disk / "state"
    (tmp_path / "t.dstack.yml").write_text(
        "type: task\nresources: {cpu: 1.., memory: 1GB.., disk: 1MB..}\n"
        "commands: ['cat /dev/zero > \"$DSTACK_WORKING_DIR/fill\" || echo disk-full']\n")
    result = dstack(home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    assert "disk-full" in result.stdout, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    if result.returncode != 0:  # the teardown may have been cut short: stop finishes it, space freed or not
        records = json.loads(dstack(home, "ps", "--all", "--json").stdout)
        for record in records:
            stopped = dstack(home, "stop", record["name"])
            assert stopped.returncode == 0, stopped.stderr
    assert_nothing_left(home)
