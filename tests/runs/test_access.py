"""The SSH access of active runs: ssh config entries pinned to the run's known_hosts, the one
Include line `ssh --setup` adds (an isolated HOME: the user's own ~/.ssh is never touched), and
how `ssh RUN [NODE] [-- CMD]` reads its words."""

from __future__ import annotations

import pytest

from dstack_iac.cli.commands.ssh import _split
from dstack_iac.errors import BadInput
from dstack_iac.model.nodes import NodeEndpoint
from dstack_iac.runs import access
from tests.helpers import run_cli


def _access(tmp_path, name="train", nodes=2) -> access.RunAccess:
    endpoints = [NodeEndpoint(rank=rank, address=f"127.0.1.{rank + 5}", private_address=f"127.0.1.{rank + 5}",
                              port=40000 + rank, user="alice", host_key="ssh-ed25519 AAAAkey", working_dir="/w",
                              directory=f"/n/{rank}") for rank in range(nodes)]
    return access.RunAccess(run_name=name, backend="local", nodes=endpoints, key_path=str(tmp_path / "my key"),
                            known_hosts=str(tmp_path / "100%" / "known_hosts"))


def test_entries_name_the_run_and_each_rank_and_pin_the_host_keys(tmp_path):
    text = access.host_entries(_access(tmp_path))
    assert "Host train-0 train\n" in text and "Host train-1\n" in text
    assert "    HostName 127.0.1.6\n    Port 40001\n    User alice\n" in text
    assert f'IdentityFile "{tmp_path}/my key"' in text
    assert f'UserKnownHostsFile "{tmp_path}/100%%/known_hosts"' in text  # '%' is a token there
    assert text.count("StrictHostKeyChecking yes") == 2
    assert "StrictHostKeyChecking no" not in text and "GlobalKnownHostsFile /dev/null" in text


def test_the_config_keeps_every_active_run_and_loses_each_at_its_end(tmp_path):
    access.publish_ssh_entries(_access(tmp_path, "first"))
    access.publish_ssh_entries(_access(tmp_path, "second", nodes=1))
    config = access.ssh_config_path().read_text()
    assert "Host first-0 first" in config and "Host second-0 second" in config
    access.withdraw("first")
    config = access.ssh_config_path().read_text()
    assert "first" not in config and "Host second-0 second" in config
    access.withdraw("first")  # twice is fine
    access.withdraw("second")
    assert "Host " not in access.ssh_config_path().read_text()


def test_setup_adds_one_include_line_first_and_changes_nothing_else(tmp_path):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    user_config = home / ".ssh" / "config"
    mine = "Host build\n    HostName build.example.com\n"
    user_config.write_text(mine)
    user_config.chmod(0o600)
    first = run_cli("ssh", "--setup", "-y", env={"HOME": str(home)})
    assert first.returncode == 0, first.stderr
    lines = user_config.read_text().splitlines(keepends=True)
    assert lines[0] == access.include_line() + "\n"
    assert "".join(lines[1:]) == mine
    assert user_config.stat().st_mode & 0o777 == 0o600
    again = run_cli("ssh", "--setup", "-y", env={"HOME": str(home)})
    assert again.returncode == 0 and "already includes" in again.stderr
    assert user_config.read_text().count("Include") == 1


def test_setup_without_a_terminal_or_yes_only_says_what_to_add(tmp_path):
    home = tmp_path / "home"
    result = run_cli("ssh", "--setup", env={"HOME": str(home)})
    assert result.returncode == 0
    assert access.include_line() in result.stderr
    assert not (home / ".ssh" / "config").exists()


@pytest.mark.parametrize("words,argv,expected", [
    ([], ["ssh", "r"], (None, [])),
    (["1"], ["ssh", "r", "1"], (1, [])),
    (["pwd"], ["ssh", "r", "--", "pwd"], (None, ["pwd"])),
    (["1", "ls", "-la"], ["ssh", "r", "1", "--", "ls", "-la"], (1, ["ls", "-la"])),
    (["1"], ["ssh", "r", "--", "1"], (None, ["1"])),  # after `--`, a number is the command
    (["echo", "hi"], ["ssh", "r", "echo", "hi"], (None, ["echo", "hi"])),
    (["git", "log", "--", "f"], ["ssh", "r", "--", "git", "log", "--", "f"], (None, ["git", "log", "--", "f"])),
])
def test_node_and_command(words, argv, expected):
    assert _split(words, argv) == expected


def test_two_words_before_the_command_are_refused():
    with pytest.raises(BadInput, match="at most a node's rank"):
        _split(["1", "2", "pwd"], ["ssh", "r", "1", "2", "--", "pwd"])


def test_the_remote_command_sources_the_run_environment_first():
    assert access.remote_command("/n/0", ["echo", "$DSTACK_NODE_RANK"]) == ". /n/0/ssh_env.sh && echo $DSTACK_NODE_RANK"
    assert access.remote_command("/n/0", []) == "exec bash --rcfile /n/0/ssh_rc -i"
    script = access.node_env_script({"DSTACK_NODE_RANK": "1", "TOKEN": "a b'c"}, "/w/sub dir")
    assert "export TOKEN='a b'\"'\"'c'" in script and "cd '/w/sub dir'" in script


def test_ssh_sees_each_groups_gpus_and_the_env_with_secrets_and_each_group_forwards_its_ports(tmp_path):
    from pydantic import SecretStr

    from dstack_iac.config.models import TaskConfiguration
    from dstack_iac.model.offers import GpuInfo, Offer
    from dstack_iac.model.plan import GroupPlan, RunPlan

    configuration = TaskConfiguration.model_validate({
        "type": "task", "env": {"TOKEN": "${{ secrets.hf }}", "PLAIN": "x"},
        "groups": [{"name": "cpu", "nodes": 1, "commands": ["serve"], "ports": [8000]},
                   {"name": "gpu", "nodes": 2, "commands": ["train"], "ports": [6006]}]})
    cpu = Offer(backend="local", region="local", instance_type="vm", cpus=2, memory_gb=4, disk_gb=10, price=0)
    gpu = cpu.model_copy(update={"gpu": GpuInfo(vendor="nvidia", name="A10G", count=4, memory_gb=24)})
    plan = RunPlan(run_name="mixed", configuration=configuration, configuration_path="t.dstack.yml",
                   repo_dir=tmp_path, backend="local", offer=cpu, nodes=3, python="python3",
                   secrets={"hf": SecretStr("hf-secret")},
                   groups=[GroupPlan(name="cpu", index=0, first_rank=0, nodes=1, offer=cpu),
                           GroupPlan(name="gpu", index=1, first_rank=1, nodes=2, offer=gpu)])
    endpoints = _access(tmp_path, "mixed", nodes=3).nodes
    environments = access.node_environments(plan, endpoints)
    assert [environments[rank]["DSTACK_GPUS_PER_NODE"] for rank in range(3)] == ["0", "4", "4"]
    assert environments[2]["TOKEN"] == "hf-secret" and environments[2]["PLAIN"] == "x"
    ports = access.ports_by_rank(plan)
    assert {rank: [p.container_port for p in mapped] for rank, mapped in ports.items()} == {0: [8000], 1: [6006]}
