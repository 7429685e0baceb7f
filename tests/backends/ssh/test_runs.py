"""Runs on SSH fleets, end to end through the CLI against real sshd hosts: a two-node torchrun
across two hosts, the environment a fleet gives, a host that is busy (refused, or waited for),
blocks sharing a GPU host, a host lost mid-run, and a lease that runs out. After every run the
hosts are as they were: authorized keys byte-identical, no run directory, lock or process of the
run, their sshd still running."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.backends.ssh.existing_hosts import Hosts
from tests.helpers import REPO, assert_nothing_left, dstack, read_until, spawn, write_task

pytestmark = pytest.mark.e2e


def run_args(directory: Path, *extra: str) -> list[str]:
    return ["run", str(directory), "-f", str(directory / "t.dstack.yml"), "-y", *extra]


def read_until_containing(process, text: str) -> list[str]:
    lines = []
    for line in process.stdout:
        lines.append(line)
        if text in line:
            break
    return lines


def delete_fleet(home: Path, name: str) -> None:
    deleted = dstack(home, "fleet", "delete", name, "-y")
    assert deleted.returncode == 0, deleted.stderr


def test_two_node_torchrun_across_two_hosts(e2e_home, fleets, hosts, tmp_path):
    fleets(hosts.fleet_file(tmp_path, "pair", [hosts[0], hosts[1]], extra="placement: cluster\n"))
    example = REPO / "examples" / "distributed"
    result = dstack(e2e_home, "run", str(example), "-f", str(example / "train.dstack.yml"), "-y", "-b", "ssh",
                    timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"{hosts[0].address},{hosts[1].address}" in result.stdout, "the plan names the hosts"
    finals = [line for line in result.stdout.splitlines() if "all_reduce=" in line]
    assert sorted(line.split()[0] for line in finals) == ["[0]", "[1]"]
    assert all("all_reduce=3 world=2" in line for line in finals)
    assert len({line.split("weights=")[1] for line in finals}) == 1, "DDP keeps the replicas identical"
    hosts.assert_untouched()
    delete_fleet(e2e_home, "pair")
    assert_nothing_left(e2e_home)


def test_a_fleet_gives_its_runs_their_hosts_addresses_and_env(e2e_home, fleets, hosts, tmp_path):
    internal = f"{hosts[1].address.rsplit('.', 1)[0]}.111"
    path = hosts.fleet_file(tmp_path, "pair", [hosts[0], hosts[1]], extra="placement: cluster\nenv:\n  - FROM_FLEET=yes\n"
                                                                          "  - BOTH=fleet\n")
    path.write_text(path.read_text().replace(f"port: {hosts[1].port}\n",
                                             f"port: {hosts[1].port}\n      internal_ip: {internal}\n"))
    fleets(path)
    data = tmp_path / "data-on-the-hosts"
    data.mkdir()
    (data / "note.txt").write_text("from the host\n")
    write_task(tmp_path / "task", f"nodes: 2\nenv: [BOTH=task]\nvolumes: ['{data}:{tmp_path}/mnt']\ncommands:\n"
                                  "  - echo \"ips=$(printf '%s' \"$DSTACK_NODES_IPS\" | tr '\\n' ,)\"\n"
                                  "  - echo \"master=$DSTACK_MASTER_NODE_IP gpus=$DSTACK_GPUS_PER_NODE\"\n"
                                  "  - echo \"fleet=$FROM_FLEET both=$BOTH where=$DSTACK_WORKING_DIR\"\n"
                                  f"  - echo \"volume=$(cat {tmp_path}/mnt/note.txt)\"\n")
    # No backend named: with a fleet here, the task runs on it (as in dstack).
    result = dstack(e2e_home, *run_args(tmp_path / "task"))
    assert result.returncode == 0, result.stdout + result.stderr
    for rank, host in enumerate(hosts.hosts[:2]):
        assert f"[{rank}] ips={hosts[0].address},{internal}" in result.stdout
        assert f"[{rank}] master={hosts[0].address} gpus=0" in result.stdout
        assert f"[{rank}] fleet=yes both=task where={host.host_dir}/runs/" in result.stdout
        assert f"[{rank}] volume=from the host" in result.stdout
    assert " ssh " in result.stdout and "pair" in result.stdout
    hosts.assert_untouched()
    delete_fleet(e2e_home, "pair")
    assert_nothing_left(e2e_home)


def test_a_busy_host_refuses_a_second_run_or_lets_it_wait(e2e_home, fleets, hosts, tmp_path):
    fleets(hosts.fleet_file(tmp_path, "solo", [hosts[2]]))
    release = tmp_path / "release-first"
    write_task(tmp_path / "first", f"name: first\nbackends: [ssh]\ncommands:\n  - echo started\n"
                                   f"  - while [ ! -f {release} ]; do sleep 0.2; done\n")
    first = spawn(e2e_home, *run_args(tmp_path / "first"))
    third = None
    try:
        read_until(first, "started")
        [fleet] = json.loads(dstack(e2e_home, "fleet", "list", "--json").stdout)
        assert fleet["hosts"][0]["used_by"] == ["first"]
        refused_delete = dstack(e2e_home, "fleet", "delete", "solo", "-y")
        assert refused_delete.returncode == 6 and "fleet 'solo' is in use by first" in refused_delete.stderr

        write_task(tmp_path / "second", "name: second\nbackends: [ssh]\ncommands: [echo second-ran]\n")
        refused = dstack(e2e_home, *run_args(tmp_path / "second"))
        assert refused.returncode == 3, refused.stderr
        assert "0 of the 1 hosts that can take the task are free, it needs 1 (in use by first)" in refused.stderr
        assert "(nothing was provisioned)" in refused.stderr

        write_task(tmp_path / "third", "name: third\nbackends: [ssh]\nretry: {on_events: [no-capacity], duration: 300}\n"
                                       "commands: [echo third-ran]\n")
        third = spawn(e2e_home, *run_args(tmp_path / "third"))
        waiting = "".join(read_until_containing(third, "retrying"))
        assert f"host {hosts[2].address} (" in waiting and "is busy: it is leased by first-0" in waiting
        assert "on no-capacity" in waiting
        release.touch()
        assert first.wait(timeout=120) == 0
        rest = third.communicate(timeout=300)[0]
        assert third.returncode == 0, waiting + rest
        assert "third-ran" in rest
    finally:
        release.touch()
        for process in (first, third):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGINT)
                process.communicate(timeout=120)
    hosts.assert_untouched()
    delete_fleet(e2e_home, "solo")
    assert_nothing_left(e2e_home)


GPU_TASK = """type: task
name: {name}
backends: [ssh]
resources: {{cpu: 1.., memory: 1GB.., disk: 1GB.., gpu: A100:1}}
commands:
  - echo "devices=$CUDA_VISIBLE_DEVICES gpus=$DSTACK_GPUS_PER_NODE"
  - echo started
  - while [ ! -f {release} ]; do sleep 0.2; done
"""


def test_blocks_let_two_runs_share_a_gpu_host(e2e_home, fleets, hosts, tmp_path):
    fleets(hosts.fleet_file(tmp_path, "gpus", [hosts[3]], extra="blocks: auto\n"))
    release = tmp_path / "release"
    runs = []
    try:
        outputs = []
        for name in ("left", "right"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "t.dstack.yml").write_text(GPU_TASK.format(name=name, release=release))
            runs.append(spawn(e2e_home, *run_args(tmp_path / name)))
            outputs.append("".join(read_until(runs[-1], "started")))  # the first still holds its block
        devices = sorted(line.split()[0] for output in outputs for line in output.splitlines() if "devices=" in line)
        assert devices == ["devices=0", "devices=1"], outputs
        assert all("gpus=1" in output for output in outputs)
        release.touch()
        assert [run.wait(timeout=120) for run in runs] == [0, 0]
    finally:
        release.touch()
        for run in runs:
            if run.poll() is None:
                run.send_signal(signal.SIGINT)
            run.communicate(timeout=120)
    hosts.assert_untouched()
    delete_fleet(e2e_home, "gpus")
    assert_nothing_left(e2e_home)


def test_a_host_lost_mid_run_fails_the_run_and_stop_cleans_up_once_it_is_back(e2e_home, fleets, tmp_path):
    own = Hosts(tmp_path / "hosts", 1)
    host = own[0]
    try:
        fleets(own.fleet_file(tmp_path, "lab"))
        write_task(tmp_path / "task", "name: lost\ncommands:\n  - echo started\n  - sleep 600\n")
        process = spawn(e2e_home, *run_args(tmp_path / "task"))
        read_until(process, "started")
        host.kill()
        rest = process.communicate(timeout=120)[0]
        assert process.returncode != 0, rest
        assert "Lost a node" in rest or "stopped answering" in rest, rest
        assert f"host {host.address} (" in rest and "Connection refused" in rest, "the teardown names the host"
        assert "Clean up with: dstack-iac stop lost" in rest
        assert host.run_dirs() and host.run_processes(), "the host keeps the run's lease (its watchdog) meanwhile"

        refused = dstack(e2e_home, "stop", "lost")
        assert refused.returncode == 7 and f"host {host.address} (" in refused.stderr, refused.stderr
        host.start()  # the host is back
        stopped = dstack(e2e_home, "stop", "lost")
        assert stopped.returncode == 0, stopped.stderr
        own.assert_untouched()
        delete_fleet(e2e_home, "lab")
        assert_nothing_left(e2e_home)
    finally:
        own.stop()


def test_a_lease_that_is_not_renewed_ends_the_run_on_the_host(e2e_home, fleets, tmp_path):
    own = Hosts(tmp_path / "hosts", 1)
    host = own[0]
    try:
        fleets(own.fleet_file(tmp_path, "lab"))
        write_task(tmp_path / "task", "name: orphan\ncommands:\n  - echo started\n  - sleep 600\n")
        process = spawn(e2e_home, *run_args(tmp_path / "task", "--lease", "10s"), new_session=True)
        read_until(process, "started")
        os.kill(process.pid, signal.SIGKILL)  # the owner dies: nobody renews the lease
        process.communicate(timeout=30)
        assert host.run_processes() and host.locks() == ["host"]
        deadline = time.monotonic() + 30
        while (host.run_dirs() or host.run_processes()) and time.monotonic() < deadline:
            time.sleep(0.5)
        # The host's watchdog released everything: the key, the task, the directory, the lock.
        assert host.run_dirs() == [] and host.run_processes() == [] and host.locks() == []
        assert host.authorized_keys.read_bytes() == own.originals[host.name]
        stopped = dstack(e2e_home, "stop", "orphan")  # the stack and the run's keys on this machine
        assert stopped.returncode == 0, stopped.stderr
        own.assert_untouched()
        delete_fleet(e2e_home, "lab")
        assert_nothing_left(e2e_home)
    finally:
        own.stop()


def test_a_host_behind_a_jump_host(e2e_home, fleets, tmp_path):
    own = Hosts(tmp_path / "hosts", 2, verbose=(0,))
    jump, inner = own[0], own[1]
    try:
        path = tmp_path / "behind.dstack.yml"
        path.write_text(f"""type: fleet
name: behind
ssh_config:
  user: {inner.user}
  identity_file: {own.key}
  proxy_jump: {{hostname: {jump.address}, port: {jump.port}, user: {jump.user}, identity_file: {own.key}}}
  hosts:
    - hostname: {inner.address}
      port: {inner.port}
""")
        fleets(path)
        [fleet] = json.loads(dstack(e2e_home, "fleet", "list", "--json").stdout)
        assert fleet["hosts"][0]["jump_host_key"] == " ".join((jump.root / "host_key.pub").read_text().split()[:2])
        write_task(tmp_path / "task", "backends: [ssh]\ncommands: [echo behind-the-jump-host]\n")
        result = dstack(e2e_home, *run_args(tmp_path / "task"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "behind-the-jump-host" in result.stdout
        # Every connection to the host went through the jump host (leases and the run's sessions).
        tunnels = [line for line in jump.log().splitlines()
                   if "direct_tcpip" in line and f"target {inner.address} port {inner.port}" in line]
        assert len(tunnels) >= 3, jump.log()[-3000:]
        # The jump host itself is only passed through: nothing of the run is written there.
        own.assert_untouched()
        delete_fleet(e2e_home, "behind")
        assert_nothing_left(e2e_home)
    finally:
        own.stop()


def test_a_host_lost_mid_run_is_retried_when_the_task_says_so(e2e_home, fleets, tmp_path):
    own = Hosts(tmp_path / "hosts", 1)
    host = own[0]
    attempted = tmp_path / "attempted"
    try:
        fleets(own.fleet_file(tmp_path, "lab"))
        write_task(tmp_path / "task", f"name: again\nretry: {{on_events: [interruption]}}\ncommands:\n"
                                      f"  - if [ -f {attempted} ]; then echo second-attempt; exit 0; fi\n"
                                      f"  - touch {attempted}; echo started; sleep 600\n")
        process = spawn(e2e_home, *run_args(tmp_path / "task"))
        read_until(process, "started")
        host.kill()
        host.start()  # a blip: the host answers again before the retry releases its lease
        rest = process.communicate(timeout=180)[0]
        assert process.returncode == 0, rest
        assert "retrying (attempt 2, on interruption" in rest and "second-attempt" in rest
        own.assert_untouched()
        delete_fleet(e2e_home, "lab")
        assert_nothing_left(e2e_home)
    finally:
        own.stop()


def test_a_child_that_leaves_the_tasks_group_and_env_is_stopped_with_the_run(e2e_home, fleets, hosts, tmp_path):
    from dstack_iac.backends.ssh import remote

    probe = remote.make_cgroup("probe-0")
    if probe is None:
        pytest.skip("no writable cgroup v2 here: a child that leaves the task's process group and clears its "
                    "environment is not found by the process group or the /proc scan (docs/fleets.md)")
    os.rmdir(probe)
    fleets(hosts.fleet_file(tmp_path, "solo", [hosts[2]]))
    escaped = tmp_path / "escaped.pid"
    write_task(tmp_path / "task", "name: escape\nbackends: [ssh]\ncommands:\n"
                                  f"  - setsid env -i sleep 600 </dev/null >/dev/null 2>&1 & echo $! > {escaped}\n"
                                  "  - echo escaped\n")
    result = dstack(e2e_home, *run_args(tmp_path / "task"))
    assert result.returncode == 0, result.stdout + result.stderr
    pid = int(escaped.read_text())
    deadline = time.monotonic() + 5
    while remote._alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert not remote._alive(pid), "the child in the lease's cgroup was stopped with the run"
    finally:
        if remote._alive(pid):
            os.kill(pid, signal.SIGKILL)
    hosts.assert_untouched()
    delete_fleet(e2e_home, "solo")
    assert_nothing_left(e2e_home)


def test_each_node_logs_in_as_its_own_hosts_user(e2e_home, fleets, tmp_path):
    import shutil
    import tempfile

    from tests.backends.ssh.existing_hosts import other_login

    login = other_login()
    if login is None:
        pytest.skip("this machine has no second account sshd can log in as")
    # The other account must reach its host's directories: a root it can traverse.
    base = Path(tempfile.mkdtemp(prefix="dstack-iac-users-", dir="/tmp"))
    base.chmod(0o755)
    own = Hosts(base / "hosts", 2, logins={1: login})
    try:
        fleets(own.fleet_file(tmp_path, "mixed", extra="placement: cluster\n"))
        write_task(tmp_path / "task", "name: users\nnodes: 2\nfleets: [mixed]\n"
                                      "commands: ['echo \"user=$(id -un) home=$DSTACK_WORKING_DIR\"']\n")
        result = dstack(e2e_home, *run_args(tmp_path / "task"))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert f"[0] user={own[0].user} home={own[0].host_dir}/runs/users-0" in result.stdout
        assert f"[1] user={login} home={own[1].host_dir}/runs/users-1" in result.stdout
        own.assert_untouched()
        delete_fleet(e2e_home, "mixed")
        assert_nothing_left(e2e_home)
    finally:
        own.stop()
        shutil.rmtree(base, ignore_errors=True)
