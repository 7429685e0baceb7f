"""The host program (backends/ssh/remote.py), run here on a directory of the test's: the run's key
line comes and goes leaving the authorized keys file byte-identical (whatever its last byte, other
runs' lines interleaved, or no file at all), locks are atomic and scoped to their lease, a
release stops the run's processes only (its cgroup's too, where one can be made), and the host
dir after the last release is as it was before the first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dstack_iac.backends.ssh import remote

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA run-a"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB run-b"


@pytest.fixture
def host(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("DSTACK_IAC_HOST_DIR", str(tmp_path / "host-dir"))
    monkeypatch.setenv("DSTACK_IAC_AUTHORIZED_KEYS", str(tmp_path / "ssh" / "authorized_keys"))
    (tmp_path / "ssh").mkdir()
    return tmp_path


@pytest.mark.parametrize("original", [
    b"ssh-rsa AAAA user@laptop\n",
    b"ssh-rsa AAAA user@laptop",  # no final newline: one is added, and removed again
    b"",
    b"# comments only\n\n",
    None,  # no file: it is created, then removed
])
@pytest.mark.parametrize("order", ["first-in-first-out", "last-in-first-out"])
def test_keys_come_and_go_byte_identical(host, original, order):
    path = host / "ssh" / "authorized_keys"
    if original is not None:
        path.write_bytes(original)
        path.chmod(0o640)
    assert remote.add_key(str(path), "a", 0, KEY_A)
    assert not remote.add_key(str(path), "a", 0, KEY_A), "added once"
    assert remote.add_key(str(path), "b", 1, KEY_B)
    lines = path.read_bytes().splitlines()
    assert lines[-2].startswith(b"restrict,port-forwarding ssh-ed25519 ") and lines[-2].split()[-1].startswith(b"dstack-iac:a:0")
    assert lines[-1].split()[-1].startswith(b"dstack-iac:b:1")
    if original:
        assert path.read_bytes().startswith(original)
    for run, rank in ([("a", 0), ("b", 1)] if order == "first-in-first-out" else [("b", 1), ("a", 0)]):
        assert remote.remove_key(str(path), run, rank)
        assert not remote.remove_key(str(path), run, rank), "removed once"
    if original is None:
        assert not path.exists()
    else:
        assert path.read_bytes() == original
        assert path.stat().st_mode & 0o777 == 0o640


def test_a_users_own_edit_between_add_and_remove_is_kept(host):
    path = host / "ssh" / "authorized_keys"
    path.write_bytes(b"ssh-rsa AAAA user@laptop\n")
    remote.add_key(str(path), "a", 0, KEY_A)
    with path.open("ab") as handle:
        handle.write(b"ssh-rsa BBBB added-by-the-user\n")
    remote.remove_key(str(path), "a", 0)
    assert path.read_bytes() == b"ssh-rsa AAAA user@laptop\nssh-rsa BBBB added-by-the-user\n"


def test_a_symlinked_keys_file_stays_a_symlink(host):
    target = host / "ssh" / "real_keys"
    target.write_bytes(b"ssh-rsa AAAA user@laptop\n")
    link = host / "ssh" / "authorized_keys"
    link.symlink_to(target)
    remote.add_key(str(link), "a", 0, KEY_A)
    assert link.is_symlink() and b"dstack-iac:a:0" in target.read_bytes()
    remote.remove_key(str(link), "a", 0)
    assert link.is_symlink() and target.read_bytes() == b"ssh-rsa AAAA user@laptop\n"


def _acquire(run: str, rank: int, locks: list[str]) -> dict:
    return remote.acquire({"run": run, "rank": rank, "locks": locks, "public_key": KEY_A, "lease_seconds": 0,
                           "program": Path(remote.__file__).read_text()})


def _held(host: Path) -> list[str]:
    """The locks the host's leases hold (each lease lists its own in its lease.json)."""
    runs = host / "host-dir" / "runs"
    return sorted(lock for lease in (runs.glob("*/lease.json") if runs.is_dir() else [])
                  for lock in json.loads(lease.read_text())["locks"])


def test_locks_are_taken_whole_or_not_at_all_and_released_by_their_lease_only(host):
    assert "directory" in _acquire("a", 0, ["block-0"])
    assert _acquire("b", 0, ["block-1", "block-0"]) == {"busy": "block-0", "owner": "a-0"}
    assert _held(host) == ["block-0"], "block-1 was not taken"
    assert not (host / "host-dir" / "runs" / "b-0").exists()
    assert "directory" in _acquire("a", 0, ["block-0"]), "a create the engine repeats is the same lease"
    assert "directory" in _acquire("c", 0, ["block-1"]), "another block is free"
    remote.release({"run": "b", "rank": 0})  # another run's release leaves a's lease alone
    assert _held(host) == ["block-0", "block-1"] and (host / "host-dir" / "runs" / "a-0").is_dir()
    removed = remote.release({"run": "a", "rank": 0})["removed"]
    assert any("(and its locks)" in item for item in removed)
    remote.release({"run": "c", "rank": 0})
    assert _held(host) == []
    assert not (host / "host-dir").exists(), "the host dir the first lease made goes with the last"
    assert (host / "ssh" / "authorized_keys").exists() is False, "the key line went, and the file it needed"


def test_a_lease_left_by_an_acquire_cut_short_is_reclaimed(host):
    _acquire("a", 0, ["host"])
    directory = host / "host-dir" / "runs" / "a-0"
    (directory / "lease.json").unlink()  # the acquire stopped before it recorded the lease
    assert _acquire("b", 0, ["host"]) == {"busy": "host", "owner": "a-0"}, "a fresh one may still be written"
    old = time.time() - remote.STALE_SECONDS - 5
    os.utime(directory, (old, old))
    assert "directory" in _acquire("b", 0, ["host"])
    assert not directory.exists() and _held(host) == ["host"]
    assert KEY_A.split()[1] in (host / "ssh" / "authorized_keys").read_text()
    remote.release({"run": "b", "rank": 0})
    assert not (host / "ssh" / "authorized_keys").exists(), "a's key went with its stale lease"


def test_a_host_dir_that_was_there_stays_as_it_was_and_its_caches_are_shared(host):
    base = host / "host-dir"
    (base / "wheels").mkdir(parents=True)  # the host's owner shares a wheelhouse between runs
    (base / "note").write_text("mine\n")
    directory = Path(_acquire("a", 0, ["host"])["directory"])
    assert os.readlink(directory / "cache" / "wheels") == str(base / "wheels")
    assert sorted(p.name for p in (directory / "cache").iterdir()) == ["wheels"], "the others stay the run's own"
    (directory / "cache" / "wheels" / "torch.whl").write_text("x")
    (directory / "cache" / "pip-cache").mkdir()
    remote.release({"run": "a", "rank": 0})
    assert sorted(p.name for p in base.iterdir()) == ["note", "wheels"]
    assert (base / "wheels" / "torch.whl").exists(), "a shared cache is the owner's: kept"


def test_concurrent_leases_of_one_host_serialise_on_the_host_dir(host):
    # Each acquire and release is a process of its own, as over SSH; eight at once, for one lock.
    program = Path(remote.__file__).read_text()
    script = ("import json, sys\n" + program + "\nrun = sys.argv[1]\n"
              "got = acquire({'run': run, 'rank': 0, 'locks': ['host'], 'public_key': %r, 'lease_seconds': 0, "
              "'program': ''})\n"
              "print(json.dumps('directory' in got)); release({'run': run, 'rank': 0}) if 'directory' in got else None\n"
              % KEY_A)
    workers = [subprocess.Popen([sys.executable, "-c", script, f"r{i}"], stdout=subprocess.PIPE, text=True)
               for i in range(8)]
    outcomes = [worker.communicate(timeout=60)[0].strip() for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), outcomes
    assert "true" in outcomes
    assert not (host / "host-dir").exists() and not (host / "ssh" / "authorized_keys").exists()


def test_release_stops_the_runs_processes_and_nothing_else(host):
    directory = Path(_acquire("a", 0, ["host"])["directory"])
    (directory / "task.sh").write_text("sleep 300\n")
    # The run's task (its own process group, as an SSH session gives it), something it started
    # in the background that only its environment ties to the run, and a bystander.
    task = subprocess.Popen(["bash", str(directory / "task.sh")], start_new_session=True)
    (directory / "task.pid").write_text(str(task.pid))
    daemon = subprocess.Popen(["sleep", "300"], env={**os.environ, "DSTACK_VENV_DIR": f"{directory}/venv"},
                              start_new_session=True)
    near_miss = subprocess.Popen(["sleep", "300"], env={**os.environ, "X": f"{directory}0/venv"})
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        removed = remote.release({"run": "a", "rank": 0})["removed"]
        for process in (task, daemon):
            assert process.wait(timeout=10) is not None
        assert near_miss.poll() is None and bystander.poll() is None
        assert any(item.startswith("processes ") for item in removed)
        assert not directory.exists()
    finally:
        for process in (task, daemon, near_miss, bystander):
            process.kill()
            process.wait()


def test_the_watchdog_releases_a_lease_that_was_not_renewed(host):
    answer = remote.acquire({"run": "a", "rank": 0, "locks": ["host"], "public_key": KEY_A, "lease_seconds": 1,
                             "program": Path(remote.__file__).read_text()})
    directory = Path(answer["directory"])
    assert remote.run_processes(str(directory)), "the watchdog runs"
    deadline = time.monotonic() + 20
    while directory.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not directory.exists()
    assert not (host / "host-dir").exists(), "nothing is left of the lease, its lock included"
    assert not (host / "ssh" / "authorized_keys").exists()
    assert remote.run_processes(str(directory)) == []


def test_the_inventory_measures_this_machine(host):
    found = remote.inventory({})
    assert found["cpus"] == os.cpu_count()
    assert found["host_dir"] == str(host / "host-dir")
    assert found["python"] == "%d.%d" % sys.version_info[:2]
    assert not (host / "host-dir").exists(), "the inventory writes nothing"


def test_release_kills_a_child_that_left_the_task_group_and_cleared_its_env(host):
    """With a cgroup for the lease (cgroup v2 writable here), a process that is in neither the
    task's group nor names the run (setsid + env -i) is still the run's."""
    probe = remote.make_cgroup("probe-0")
    if probe is None:
        pytest.skip("this machine gives no writable cgroup v2: the process group and /proc scan are all there is")
    os.rmdir(probe)
    directory = Path(_acquire("a", 0, ["host"])["directory"])
    cgroup = Path((directory / "cgroup").read_text().strip())
    assert cgroup.name == "dstack-iac-a-0" and cgroup.is_dir()
    # What the node script does first (session.with_environment), then a child that escapes.
    task = subprocess.Popen(["bash", "-c", f'echo $$ > "$(cat {directory}/cgroup)/cgroup.procs"; '
                                           "setsid env -i sleep 300 & echo $!; wait"],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    escaped = int(task.stdout.readline())
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        deadline = time.monotonic() + 10  # `$!` is known before the child has run setsid and env -i
        while Path(f"/proc/{escaped}/comm").read_text().strip() != "sleep" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert os.getpgid(escaped) != task.pid and b"a-0" not in Path(f"/proc/{escaped}/environ").read_bytes()
        removed = remote.release({"run": "a", "rank": 0})["removed"]
        assert any(str(escaped) in item for item in removed), removed
        task.wait(timeout=10)
        deadline = time.monotonic() + 5
        while remote._alive(escaped) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not remote._alive(escaped), "the escaped child was killed"
        assert bystander.poll() is None
        assert not cgroup.exists(), "the cgroup goes with the lease"
    finally:
        for process in (task, bystander):
            process.kill()
            process.wait()
        try:
            os.kill(escaped, 9)
        except OSError:
            pass
        remote.release({"run": "a", "rank": 0})  # its cgroup too, when the test failed before
