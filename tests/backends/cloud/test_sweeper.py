"""`gc` on clouds: tagged resources of runs without a stack are found through the clouds' tag
searches (Pulumi mocks answer the invokes) and adopted for deletion, instances first."""

from __future__ import annotations

import pulumi

from dstack_iac.backends.aws import sweeper as aws_sweeper
from dstack_iac.backends.cloud.sweeper import import_file
from dstack_iac.backends.gcp import sweeper as gcp_sweeper
from dstack_iac.backends.registry import get_backend
from dstack_iac.model.backend import Orphan

ACCOUNT = "123456789012"


def arn(region: str, kind: str, resource_id: str) -> str:
    return f"arn:aws:ec2:{region}:{ACCOUNT}:{kind}/{resource_id}"


class TaggedAccount(pulumi.runtime.Mocks):
    """An AWS account with one abandoned run (gone-run) and one live run (live-run), and a GCP
    project likewise; plus a resource nobody tagged."""

    def new_resource(self, args):
        return [f"{args.name}-id", dict(args.inputs)]

    def call(self, args):
        if args.token == "aws:resourcegroupstaggingapi/getResources:getResources":
            region = args.args["region"]
            if region != "us-east-1":
                return {"resourceTagMappingLists": []}
            gone, live = {"dstack-iac:run": "gone-run", "dstack-iac:owner": "bob"}, {"dstack-iac:run": "live-run"}
            return {"resourceTagMappingLists": [
                {"resourceArn": arn(region, "instance", "i-0aaa"), "tags": gone},
                {"resourceArn": arn(region, "security-group", "sg-0bbb"), "tags": gone},
                {"resourceArn": arn(region, "key-pair", "key-0ccc"), "tags": gone},
                {"resourceArn": arn(region, "instance", "i-0live"), "tags": live},
                {"resourceArn": arn(region, "instance", "i-0else"), "tags": {"team": "x"}},
            ]}
        if args.token == "aws:ec2/getKeyPair:getKeyPair":
            return {"keyName": "run-key-7f3a", "keyPairId": args.args["keyPairId"]}
        if args.token == "gcp:organizations/getClientConfig:getClientConfig":
            return {"project": "p1"}
        if args.token == "gcp:cloudasset/getSearchAllResources:getSearchAllResources":
            base = "//compute.googleapis.com/projects/p1"
            return {"results": [
                {"assetType": "compute.googleapis.com/Instance", "name": f"{base}/zones/us-central1-a/instances/n0",
                 "labels": {"dstack-iac-run": "gone-run"}, "location": "us-central1-a"},
                {"assetType": "compute.googleapis.com/Firewall", "name": f"{base}/global/firewalls/"
                 "dstack-iac-gone-run-ssh", "labels": {}, "location": "global"},
                {"assetType": "compute.googleapis.com/Instance", "name": f"{base}/zones/us-central1-a/instances/n9",
                 "labels": {"dstack-iac-run": "live-run"}, "location": "us-central1-a"},
            ]}
        return {}


def found_by(program) -> list[Orphan]:
    pulumi.runtime.set_mocks(TaggedAccount(), project="dstack-iac", stack="gc", preview=False)
    found: list[Orphan] = []

    @pulumi.runtime.test
    def run():
        program(found.extend)
        return pulumi.Output.from_input(None)

    run()
    return found


def test_aws_orphans_are_the_tagged_resources_of_runs_without_a_stack():
    found = found_by(aws_sweeper.discovery_program(["us-east-1", "eu-west-1"], {"live-run"}))
    assert sorted((o.run, o.type, o.id, o.region) for o in found) == [
        ("gone-run", "aws:ec2/instance:Instance", "i-0aaa", "us-east-1"),
        ("gone-run", "aws:ec2/keyPair:KeyPair", "run-key-7f3a", "us-east-1"),  # imported by name
        ("gone-run", "aws:ec2/securityGroup:SecurityGroup", "sg-0bbb", "us-east-1"),
    ]
    assert {o.owner for o in found} == {"bob"}
    spec = import_file(found, aws_sweeper.import_id)
    assert {"type": "aws:ec2/instance:Instance", "name": "i-0aaa", "id": "i-0aaa@us-east-1"} in spec["resources"]


def test_gcp_orphans_include_firewalls_found_by_name():
    found = found_by(gcp_sweeper.discovery_program({"live-run"}))
    assert sorted((o.run, o.type, o.id) for o in found) == [
        ("gone-run", "gcp:compute/firewall:Firewall", "projects/p1/global/firewalls/dstack-iac-gone-run-ssh"),
        ("gone-run", "gcp:compute/instance:Instance", "projects/p1/zones/us-central1-a/instances/n0"),
    ]


def test_removal_takes_instances_first(monkeypatch):
    removed_phases = []
    from dstack_iac.backends.cloud import sweeper

    monkeypatch.setattr(sweeper, "remove", lambda run, phases, import_id: removed_phases.append(
        (run, [[o.id for o in phase] for phase in phases])) or [])
    orphans = [Orphan(backend="aws", run="r", type="aws:ec2/securityGroup:SecurityGroup", id="sg-1", region="x"),
               Orphan(backend="aws", run="r", type="aws:ec2/instance:Instance", id="i-1", region="x")]
    get_backend("aws").remove_orphans(orphans)
    assert removed_phases == [("r", [["i-1"], ["sg-1"]])]
