"""The reviewable plan document and its comparison (infra/reviewed_plan.py), as pure functions."""

from __future__ import annotations

import copy
import json

import pytest

from dstack_iac.infra.reviewed_plan import (HIDDEN, PER_LAUNCH, SECRET, PlanFileError, differences, load_plan,
                                            mask_value, resource_properties)

SECRET_INPUT = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "hunter2"}


def document() -> dict:
    return {
        "format": "dstack-iac/plan@1", "run_name": "train",
        "configuration": {"path": "t.dstack.yml", "run_args": [], "sha256": "aaa",
                          "normalized": {"commands": ["echo one"], "nodes": 1}},
        "backend": "aws", "nodes": 1,
        "offer": {"backend": "aws", "instance_type": "g5.xlarge", "price": 1.006, "spot": False},
        "resources": [
            {"op": "create", "type": "aws:ec2/instance:Instance", "name": "node-0",
             "properties": {"instanceType": "g5.xlarge", "userData": SECRET}},
            {"op": "create", "type": "dstack-iac:run:Offer", "name": "offer", "properties": {"nodes": 1}},
        ],
    }


def test_the_same_plan_has_no_differences():
    assert differences(document(), copy.deepcopy(document())) == []


def test_a_changed_configuration_is_shown_as_a_diff():
    now = document()
    now["configuration"] = {**now["configuration"], "sha256": "bbb",
                            "normalized": {"commands": ["echo two"], "nodes": 1}}
    found = differences(document(), now)
    assert found[0] == "configuration changed:"
    assert "  -  - echo one" in found and "  +  - echo two" in found


def test_offer_nodes_name_and_resources_differences_are_each_named():
    now = document()
    now["run_name"] = "train-2"
    now["offer"] = {**now["offer"], "instance_type": "g5.2xlarge", "price": 1.212}
    now["nodes"] = 2
    now["resources"] = [
        {"op": "create", "type": "aws:ec2/instance:Instance", "name": "node-0",
         "properties": {"instanceType": "g5.2xlarge", "userData": SECRET}},
        {"op": "create", "type": "aws:ec2/instance:Instance", "name": "node-1", "properties": {}},
    ]
    assert differences(document(), now) == [
        "run name: train (reviewed) -> train-2",
        "offer instance_type: 'g5.xlarge' (reviewed) -> 'g5.2xlarge'",
        "offer price: 1.006 (reviewed) -> 1.212",
        "nodes: 1 (reviewed) -> 2",
        "resource offer (dstack-iac:run:Offer) is no longer planned",
        "resource node-1 (aws:ec2/instance:Instance) is new: create",
        "resource node-0 (aws:ec2/instance:Instance) instanceType: 'g5.xlarge' (reviewed) -> 'g5.2xlarge'",
    ]


def test_an_operation_change_is_a_difference():
    now = document()
    now["resources"][1] = {**now["resources"][1], "op": "replace"}
    assert differences(document(), now) == ["resource offer (dstack-iac:run:Offer): create (reviewed) -> replace"]


def test_secrets_hidden_and_per_launch_properties_are_masked():
    assert mask_value({"a": [SECRET_INPUT, 1], "b": SECRET_INPUT}) == {"a": [SECRET, 1], "b": SECRET}
    shown = resource_properties({"authorizedKey": "ssh-ed25519 AAA", "nodeDir": "/tmp/x", "rank": 0,
                                 "__provider": "pickled", "password": SECRET_INPUT},
                                hidden={"authorized_key"}, per_launch={"node_dir"})
    assert shown == {"authorizedKey": HIDDEN, "nodeDir": PER_LAUNCH, "rank": 0, "password": SECRET}


def test_a_plan_file_that_is_not_one_is_refused_with_its_path(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text("{not json")
    with pytest.raises(PlanFileError, match="not a plan saved by"):
        load_plan(path)
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(PlanFileError, match="format 'other' is not 'dstack-iac/plan@1'"):
        load_plan(path)
    path.write_text(json.dumps({"format": "dstack-iac/plan@1", "run_name": "x"}))
    with pytest.raises(PlanFileError, match="has no 'configuration'"):
        load_plan(path)
    with pytest.raises(PlanFileError, match="cannot be read"):
        load_plan(tmp_path / "missing.json")
