"""The ssh backend's planning and interface, without hosts: which fleets a task may use
(`fleets: [NAME]`, an unknown name refused), per-host users through to the leases a run's stack
declares (a real Pulumi preview: nothing is connected to), that its runs are bound to the machine
that started them, and the tools a host's inventory must show."""

from __future__ import annotations

import json

import pytest

from dstack_iac.backends.ssh import records
from dstack_iac.backends.ssh.backend import SshBackend, UnknownFleet
from dstack_iac.backends.ssh.handlers import missing_tools
from dstack_iac.backends.ssh.session import with_environment
from dstack_iac.model.backend import OfferRequest
from tests.backends.ssh.test_allocation import fleet, host, task
from tests.helpers import run_cli, stack_files, write_task


def _save(name: str, *hosts: records.HostRecord, placement: str = "cluster") -> None:
    records.save(fleet(*hosts, placement=placement).model_copy(update={"name": name}))


def _user(record: records.HostRecord, user: str, address: str) -> records.HostRecord:
    return record.model_copy(update={"user": user, "hostname": address, "private_address": address})


def test_fleets_names_the_fleets_a_task_may_use_and_an_unknown_one_is_refused(state_dir):
    _save("cpu-lab", host("cpu-1"))
    _save("gpu-lab", host("gpu-1", gpus=2))
    backend = SshBackend()
    assert backend.considered_by_default()
    [offer] = backend.offers(OfferRequest(configuration=task(fleets=["gpu-lab"])))
    assert (offer.region, offer.instance_type) == ("gpu-lab", "gpu-1")
    [offer] = backend.offers(OfferRequest(configuration=task(fleets=[{"name": "cpu-lab"}])))
    assert (offer.region, offer.instance_type) == ("cpu-lab", "cpu-1")
    with pytest.raises(UnknownFleet, match=r"fleets: no fleet named 'nope', 'other' \(see `dstack-iac fleet list`\)"):
        backend.offers(OfferRequest(configuration=task(fleets=["gpu-lab", "nope", "other"])))


def test_each_node_logs_in_as_its_hosts_user_and_an_unknown_fleet_stops_the_cli(state_dir, tmp_path):
    _save("pair", _user(host("box-1"), "alice", "127.42.250.1"), _user(host("box-2"), "bob", "127.42.250.2"))
    write_task(tmp_path / "task", "name: users\nnodes: 2\nfleets: [pair]\ncommands: [whoami]\n")
    previewed = run_cli("preview", str(tmp_path / "task"), "-f", str(tmp_path / "task" / "t.dstack.yml"), "--json")
    assert previewed.returncode == 0, previewed.stderr
    leases = sorted((resource["properties"]["rank"], resource["properties"]["host"])
                    for resource in json.loads(previewed.stdout)["resources"]
                    if resource["type"] == "dstack-iac:ssh:HostLease")
    assert leases == [(0, "alice@127.42.250.1:22"), (1, "bob@127.42.250.2:22")]
    assert SshBackend().node_user() == "", "no run-wide user: each lease carries its host's"

    (tmp_path / "task" / "t.dstack.yml").write_text((tmp_path / "task" / "t.dstack.yml").read_text()
                                                    .replace("fleets: [pair]", "fleets: [gone]"))
    refused = run_cli("preview", str(tmp_path / "task"), "-f", str(tmp_path / "task" / "t.dstack.yml"))
    assert refused.returncode == 2, refused.stderr
    assert "fleets: no fleet named 'gone'" in refused.stderr and "Traceback" not in refused.stderr
    assert stack_files(state_dir) == []


def test_a_run_on_a_fleet_is_stopped_only_where_it_was_started():
    backend = SshBackend()
    assert backend.host_bound
    assert "lease records" in backend.host_bound_why and "only it can stop" in backend.host_bound_why


def test_the_inventory_refuses_hosts_without_what_the_watchdog_needs():
    assert missing_tools({"bash": True, "stat": True, "date": True}) is None
    assert missing_tools({}) is None, "an inventory of an older host program lists no tools"
    assert "bash is not installed" in missing_tools({"bash": False})
    lacking = missing_tools({"bash": True, "stat": False, "date": True})
    assert "`stat -c %Y` (GNU coreutils) did not work there" in lacking and "watchdog" in lacking
    assert "`stat -c %Y` (GNU coreutils) and `date +%s`" in missing_tools({"stat": False, "date": False})


def test_the_node_script_joins_the_leases_cgroup_before_anything_else():
    script = with_environment("#!/bin/bash\nset -e\necho hi\n", {"A": "1 2"}, "/h/runs/r-0")
    first, join, export, *rest = script.splitlines()
    assert first == "#!/bin/bash" and "/h/runs/r-0/cgroup" in join and "cgroup.procs" in join
    assert export == "export A='1 2'" and rest == ["set -e", "echo hi"]
    assert with_environment("#!/bin/bash\necho hi\n", {}) == "#!/bin/bash\necho hi\n"
