"""A team's own Pulumi program using the components (docs/reuse.md), with pulumi mocks: its own
resource names and tags (the offer component, which mocks never see, is checked with the real
engine in tests/test_stacks_projects.py)."""

from __future__ import annotations

import pulumi
import pytest

from tests.backends.cloud.mocks import RecordingMocks, settle


@pytest.fixture
def mocks(state_dir):
    recorder = RecordingMocks()
    pulumi.runtime.set_mocks(recorder, project="team-platform", stack="prod", preview=False)
    return recorder


@pulumi.runtime.test
def test_a_teams_program_names_and_tags_the_nodes_its_own_way(mocks, tmp_path, monkeypatch):
    from dstack_iac import task_cluster

    monkeypatch.setenv("DSTACK_IAC_OWNER", "alice@team.example")  # the owner as the team knows her

    task = tmp_path / "train.dstack.yml"
    task.write_text("type: task\nname: train\nbackends: [aws]\nregions: [us-east-1]\nnodes: 2\n"
                    "resources: {gpu: A10G:1}\ntags: {project: vision}\ncommands: [python train.py]\n")
    cluster = task_cluster("ml-train", task, public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIForTest x",
                           ssh_cidr="203.0.113.0/24", run_name="vision-nightly",
                           tags={"cost-centre": "ml-42", "team": "vision"})

    def check(_):
        instances = mocks.of_type("aws:ec2/instance:Instance")
        assert sorted(r.name for r in instances) == ["ml-train-node-0", "ml-train-node-1"]
        for instance in instances:
            tags = instance.inputs["tags"]
            assert (tags["cost-centre"], tags["team"], tags["project"]) == ("ml-42", "vision", "vision")
            assert tags["dstack-iac:run"] == "vision-nightly"
            assert tags["dstack-iac:owner"] == "alice@team.example"
        names = [r.name for r in mocks.resources]
        assert {"ml-train-sg", "ml-train-ssh", "ml-train-key"} <= set(names)

    return settle(cluster).apply(check)


def test_tags_a_cloud_would_refuse_are_refused_by_name(state_dir, tmp_path):
    from dstack_iac import task_cluster

    task = tmp_path / "t.dstack.yml"
    task.write_text("type: task\nbackends: [aws]\nregions: [us-east-1]\ncommands: [x]\n")
    with pytest.raises(ValueError, match="tag 'bad key!'"):
        task_cluster("t", task, public_key="k", ssh_cidr="203.0.113.0/24", tags={"bad key!": "x"})
