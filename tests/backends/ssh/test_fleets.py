"""`fleet create|list|delete` against real sshd hosts: each host reached over SSH, its host key
recorded (trusted on first use), what it has measured; a host that cannot be reached fails the
create, naming it; creating and deleting a fleet writes nothing on its hosts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.backends.ssh.existing_hosts import free_port
from tests.helpers import dstack, stack_files

pytestmark = pytest.mark.e2e


def _fingerprint(public_key_file) -> str:
    return subprocess.run(["ssh-keygen", "-lf", str(public_key_file)], capture_output=True, text=True,
                          check=True).stdout.split()[1]


def _meminfo_gb() -> float:
    with open("/proc/meminfo") as meminfo:
        return int(next(line for line in meminfo if line.startswith("MemTotal:")).split()[1]) / 1024 / 1024


def test_create_measures_every_host_and_delete_leaves_them_as_they_were(e2e_home, fleets, hosts, tmp_path):
    plain, gpu = hosts[0], hosts[3]
    path = hosts.fleet_file(tmp_path, "lab", [plain, gpu], extra="blocks: auto\nresources: {gpu: 24GB}\n")
    created = dstack(e2e_home, "fleet", "create", "-f", str(path), "-y")
    assert created.returncode == 0, created.stderr
    assert "resources is ignored for SSH fleets" in created.stderr
    for host in (plain, gpu):
        assert f"{host.address}: host key {_fingerprint(host.root / 'host_key.pub')} recorded (trusted on first use" \
               in created.stderr

    [fleet] = json.loads(dstack(e2e_home, "fleet", "list", "--json").stdout)
    assert (fleet["name"], fleet["placement"]) == ("lab", "any")
    first, second = fleet["hosts"]
    for host, listed in ((plain, first), (gpu, second)):
        inventory = listed["inventory"]
        assert (listed["hostname"], listed["port"], listed["user"]) == (host.address, host.port, host.user)
        assert listed["host_key"] == " ".join((host.root / "host_key.pub").read_text().split()[:2])
        assert listed["private_address"] == host.address and listed["used_by"] == []
        # Measured on the host (this machine): CPUs, memory, the disk of the host dir, OS, arch.
        assert inventory["cpus"] == os.cpu_count()
        assert abs(inventory["memory_gb"] - _meminfo_gb()) < 0.2
        assert abs(inventory["disk_gb"] - shutil.disk_usage(host.host_dir).total / 1024 ** 3) < 0.2
        assert inventory["arch"] == ("arm" if os.uname().machine in ("arm64", "aarch64") else "x86")
        assert inventory["host_dir"] == str(host.host_dir)
        assert inventory["authorized_keys"] == str(host.authorized_keys)
    assert first["inventory"]["gpus"] == [] and first["blocks"] == 1
    assert [(g["vendor"], g["name"], g["memory_gb"], g["index"]) for g in second["inventory"]["gpus"]] == \
           [("nvidia", "NVIDIA A100-SXM4-80GB", 80, 0), ("nvidia", "NVIDIA A100-SXM4-80GB", 80, 1)]
    assert second["blocks"] == 2, "blocks: auto is one block per GPU"
    assert "identity_file" in first and "PRIVATE KEY" not in (e2e_home / "fleets" / "lab" / "fleet.json").read_text()
    known_hosts = (e2e_home / "fleets" / "lab" / "known_hosts").read_text().splitlines()
    assert known_hosts == [f"[{h.address}]:{h.port} {' '.join((h.root / 'host_key.pub').read_text().split()[:2])}"
                           for h in (plain, gpu)]

    table = dstack(e2e_home, "fleet", "list").stdout
    assert f"root@{gpu.address}:{gpu.port}" in table.replace(gpu.user + "@", "root@") and "2xA100 (80GB)" in table

    again = dstack(e2e_home, "fleet", "create", "-f", str(path), "-y")
    assert again.returncode == 6 and "exists already" in again.stderr
    other = dstack(e2e_home, "fleet", "create", "-f", str(hosts.fleet_file(tmp_path, "other", [plain])), "-y")
    assert other.returncode == 2 and f"is already in fleet lab" in other.stderr

    deleted = dstack(e2e_home, "fleet", "delete", "lab", "-y")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(dstack(e2e_home, "fleet", "list", "--json").stdout) == []
    assert stack_files(e2e_home) == []
    hosts.assert_untouched()
    for host in (plain, gpu):
        assert sorted(p.name for p in host.host_dir.iterdir()) == ["venv-seeds", "wheels"], "nothing was written"


def test_a_host_that_cannot_be_reached_fails_the_create_naming_it(e2e_home, fleets, hosts, tmp_path):
    dead = f"{hosts[0].address.rsplit('.', 1)[0]}.250"
    path = hosts.fleet_file(tmp_path, "lab", [hosts[0]])
    path.write_text(path.read_text().replace("  hosts:\n", f"  hosts:\n    - hostname: {dead}\n"
                                                              f"      port: {free_port(dead)}\n"))
    result = dstack(e2e_home, "fleet", "create", "-f", str(path), "-y")
    assert result.returncode == 7, result.stderr
    assert f"fleet lab was not created:\n  host {dead} (" in result.stderr
    assert "cannot connect: [Errno 111] Connection refused" in result.stderr
    assert json.loads(dstack(e2e_home, "fleet", "list", "--json").stdout) == []
    assert stack_files(e2e_home) == [], "nothing of the fleet is left"

    missing = hosts.fleet_file(tmp_path, "lab", [hosts[0]])
    missing.write_text(missing.read_text().replace(str(hosts.key), str(tmp_path / "no-such-key")))
    result = dstack(e2e_home, "fleet", "create", "-f", str(missing), "-y")
    assert result.returncode == 2
    assert f"lab.dstack.yml:5:3: ssh_config.identity_file: the identity file {tmp_path / 'no-such-key'} does not exist" \
           in result.stderr
    hosts.assert_untouched()


def test_a_host_key_that_changed_is_refused(e2e_home, fleets, tmp_path):
    from tests.backends.ssh.existing_hosts import Hosts, make_key
    from tests.helpers import assert_nothing_left, write_task

    own = Hosts(tmp_path / "hosts", 1)
    try:
        fleets(own.fleet_file(tmp_path, "lab"))
        host = own[0]
        host.stop()
        for suffix in ("", ".pub"):
            (host.root / f"host_key{suffix}").unlink()
        make_key(host.root / "host_key", "reinstalled")
        host.start()
        write_task(tmp_path / "task", "backends: [ssh]\ncommands: [echo never]\n")
        result = dstack(e2e_home, "run", str(tmp_path / "task"), "-f", str(tmp_path / "task" / "t.dstack.yml"), "-y")
        assert result.returncode == 7, result.stderr
        assert "its host key changed: pinned SHA256:" in result.stderr and "refusing to connect" in result.stderr
        assert "never" not in result.stdout
        own.assert_untouched()
        assert dstack(e2e_home, "fleet", "delete", "lab", "-y").returncode == 0
        assert_nothing_left(e2e_home)
    finally:
        own.stop()


def test_a_stack_left_by_a_create_cut_short_goes_and_the_name_is_claimed_by_one_create(
        e2e_home, fleets, hosts, tmp_path):
    from dstack_iac.backends.ssh.fleet import _destroy_quietly, claimed
    from dstack_iac.infra.stack import ManagedStack, stack_exists

    # A create killed after it made its stack, before the fleet's record: `delete` finishes it.
    ManagedStack("fleet-lab").create()
    deleted = dstack(e2e_home, "fleet", "delete", "lab", "-y")
    assert deleted.returncode == 0, deleted.stderr
    assert "its leftover stack was removed" in deleted.stdout + deleted.stderr and not stack_exists("fleet-lab")
    missing = dstack(e2e_home, "fleet", "delete", "lab", "-y")
    assert missing.returncode == 2 and "no fleet named 'lab'" in missing.stderr

    # ... and so does the next `create` of that name.
    ManagedStack("fleet-lab").create()
    path = hosts.fleet_file(tmp_path, "lab", [hosts[0]])
    created = dstack(e2e_home, "fleet", "create", "-f", str(path), "-y")
    assert created.returncode == 0, created.stderr
    assert "removing the stack fleet-lab a create of fleet lab cut short left behind" in created.stdout + created.stderr
    assert [f["name"] for f in json.loads(dstack(e2e_home, "fleet", "list", "--json").stdout)] == ["lab"]

    # While a create (or delete) of a name runs, another one of that name is refused: it would
    # take the first one's stack for a leftover and destroy it.
    with claimed("other"), claimed("lab"):
        for args in (("fleet", "create", "-f", str(hosts.fleet_file(tmp_path, "other", [hosts[1]])), "-y"),
                     ("fleet", "delete", "lab", "-y")):
            busy = dstack(e2e_home, *args)
            assert busy.returncode == 6, busy.stderr
            assert "is being created or deleted by another dstack-iac process" in busy.stderr
    assert not stack_exists("fleet-other") and stack_exists("fleet-lab")
    assert not list((e2e_home / "fleets").glob("*.lock")), "a claim leaves no file"

    # A create whose stack cannot be destroyed keeps its own error and adds what was left.
    note = _destroy_quietly(ManagedStack("fleet-never-made"))
    assert "its stack fleet-never-made could not be removed (" in note
    assert "`dstack-iac fleet delete never-made` removes it" in note
    assert dstack(e2e_home, "fleet", "delete", "lab", "-y").returncode == 0
    assert stack_files(e2e_home) == []
    hosts.assert_untouched()


def test_the_hosts_check_sees_anything_left_in_a_host_dir_or_beside_its_keys(hosts):
    """What the other tests rely on: assert_untouched fails on any file or directory a run would
    leave (a lock file, a cache, a temporary keys file), not only on run directories."""
    host = hosts[2]
    for leftover in (host.host_dir / "locks" / ".authorized_keys.lock", host.host_dir / "pip-cache" / "x",
                     host.authorized_keys.parent / ".authorized_keys.dstack-iac.tmp"):
        leftover.parent.mkdir(exist_ok=True)
        leftover.write_text("")
        try:
            with pytest.raises(AssertionError, match=leftover.name.replace(".", r"\.")):
                hosts.assert_untouched()
        finally:
            leftover.unlink()
            if leftover.parent not in (host.host_dir, host.authorized_keys.parent):
                leftover.parent.rmdir()
    hosts.assert_untouched()
