"""The AWS component under Pulumi's mocks (preview=False: the assertions run on real values)."""

from __future__ import annotations

import pulumi
import pytest

from dstack_iac.config.models import ResourcesSpec, SpotPolicy
from dstack_iac.backends.aws.components import GPU_IMAGE, UBUNTU_IMAGE, AwsTaskCluster, ebs_device_path
from dstack_iac.backends.cloud.node_setup import render_node_setup
from dstack_iac.model.nodes import NodeEndpoint
from dstack_iac.offers.query import OfferQuery
from tests.offers.catalogs import find_offers
from tests.helpers import assert_valid_bash
from tests.backends.cloud.mocks import (PASSWORD, RecordingMocks, cluster_spec, is_secret,
                                     plain_occurrences, settle, unwrap, volume, with_registry)


@pytest.fixture
def mocks():
    recorder = RecordingMocks()
    pulumi.runtime.set_mocks(recorder, project="dstack-iac", stack="test", preview=False)
    return recorder


def cheapest(gpu: str | None, spot: bool = False, region: str = "us-east-1"):
    resources = ResourcesSpec.model_validate({"gpu": gpu} if gpu else {})
    query = OfferQuery(resources=resources, backends=("aws",), regions=(region,),
                       spot_policy=SpotPolicy.SPOT if spot else SpotPolicy.ON_DEMAND)
    return find_offers(query)[0]




@pulumi.runtime.test
def test_single_gpu_spot_node(mocks):
    offer = cheapest("T4", spot=True)
    assert offer.spot and offer.gpu.name == "T4"
    cluster = AwsTaskCluster("run", cluster_spec(offer, disk_gb=200))

    def check(nodes):
        [instance] = mocks.of_type("aws:ec2/instance:Instance")
        inputs = instance.inputs
        assert inputs["instanceType"] == offer.instance_type and inputs["region"] == "us-east-1"
        assert inputs["instanceMarketOptions"]["marketType"] == "spot"
        assert inputs["rootBlockDevice"]["volumeSize"] == 200
        assert inputs["ami"] == "ami-0123456789" and inputs["availabilityZone"] == "us-east-1b"
        assert inputs["tags"]["dstack-iac:run"] == "train-run"
        assert "placementGroup" not in inputs or not inputs["placementGroup"]
        assert mocks.of_type("aws:ec2/placementGroup:PlacementGroup") == []
        [ami_call] = [c for c in mocks.calls if c.token == "aws:ec2/getAmi:getAmi"]
        assert ami_call.args["filters"][0]["values"] == [GPU_IMAGE]
        [zone_call] = [c for c in mocks.calls if c.token.endswith("getAvailabilityZone")]
        assert zone_call.args["zoneId"] == offer.availability_zone
        [key] = mocks.of_type("aws:ec2/keyPair:KeyPair")
        assert key.inputs["publicKey"].endswith("RunKey dstack-iac")
        assert is_secret(inputs["userData"])
        # Same contract as the local backend.
        endpoint = NodeEndpoint.model_validate(nodes[0])
        assert (endpoint.address, endpoint.private_address, endpoint.port, endpoint.user) == \
            ("203.0.113.10", "10.0.0.10", 22, "ubuntu")
        for resource in mocks.resources:
            if "tags" in resource.inputs:
                assert resource.inputs["tags"]["dstack-iac:run"] == "train-run", resource.typ

    return settle(cluster).apply(check)


@pulumi.runtime.test
def test_two_nodes_share_a_placement_group_and_the_rules_are_exactly_these(mocks):
    offer = cheapest(None)
    cluster = AwsTaskCluster("run", cluster_spec(offer, nodes=2))

    def check(nodes):
        assert [n["rank"] for n in nodes] == [0, 1]
        [group] = mocks.of_type("aws:ec2/securityGroup:SecurityGroup")
        assert "ingress" not in group.inputs or not group.inputs["ingress"]
        ingress = mocks.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        egress = mocks.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
        assert len(ingress) == 2 and len(egress) == 1
        by_name = {rule.name: rule for rule in ingress}
        ssh, intra = by_name["run-ssh"], by_name["run-intra"]
        assert (ssh.inputs["ipProtocol"], ssh.inputs["fromPort"], ssh.inputs["toPort"]) == ("tcp", 22, 22)
        assert ssh.inputs["cidrIpv4"] == "198.51.100.7/32"
        assert intra.inputs["ipProtocol"] == "-1"
        assert intra.inputs["referencedSecurityGroupId"] == intra.inputs["securityGroupId"] == "run-sg-id"
        assert "cidrIpv4" not in intra.inputs
        assert egress[0].inputs["cidrIpv4"] == "0.0.0.0/0"
        [placement] = mocks.of_type("aws:ec2/placementGroup:PlacementGroup")
        assert placement.inputs["strategy"] == "cluster"
        instances = mocks.of_type("aws:ec2/instance:Instance")
        assert len(instances) == 2
        for instance in instances:
            assert instance.inputs["placementGroup"] == "run-placement"
            assert instance.inputs["vpcSecurityGroupIds"] == ["run-sg-id"]
            assert instance.inputs["availabilityZone"] == "us-east-1b"
            assert "instanceMarketOptions" not in instance.inputs
        [ami_call] = [c for c in mocks.calls if c.token == "aws:ec2/getAmi:getAmi"]
        assert ami_call.args["filters"][0]["values"] == [UBUNTU_IMAGE]

    return settle(cluster).apply(check)


@pulumi.runtime.test
def test_a_volume_is_looked_up_by_name_and_attached(mocks):
    offer = cheapest(None)
    cluster = AwsTaskCluster("run", cluster_spec(offer, volumes=[volume("my-data", "/data")]))

    def check(_nodes):
        [lookup] = [c for c in mocks.calls if c.token == "aws:ebs/getVolume:getVolume"]
        filters = {f["name"]: f["values"] for f in lookup.args["filters"]}
        assert filters == {"tag:Name": ["my-data"], "availability-zone": ["us-east-1b"]}
        [attachment] = mocks.of_type("aws:ec2/volumeAttachment:VolumeAttachment")
        assert attachment.inputs["volumeId"] == "vol-0abc123"
        assert attachment.inputs["instanceId"] == "run-node-0-id"
        user_data = unwrap(mocks.of_type("aws:ec2/instance:Instance")[0].inputs["userData"])
        assert ebs_device_path("vol-0abc123") in user_data and "mount " in user_data and "/data" in user_data

    return settle(cluster).apply(check)


@pulumi.runtime.test
def test_registry_password_is_only_ever_a_secret(mocks):
    offer = cheapest("T4")
    spec = with_registry(offer)
    assert PASSWORD not in spec.model_dump_json() and PASSWORD not in repr(spec)
    cluster = AwsTaskCluster("run", spec)

    def check(_nodes):
        for resource in mocks.resources:
            assert plain_occurrences(resource.inputs, PASSWORD) == [], resource.typ
        user_data = mocks.of_type("aws:ec2/instance:Instance")[0].inputs["userData"]
        assert is_secret(user_data) and PASSWORD in unwrap(user_data)
        assert "docker login --username bot --password-stdin registry.example.com" in unwrap(user_data)
        assert "nvidia-container-toolkit" in unwrap(user_data)

    return settle(cluster).apply(check)


@pytest.mark.parametrize("image, gpu", [(None, None), ("pytorch/pytorch:latest", None), ("img:1", "T4")])
def test_node_setup_scripts_are_valid_bash(tmp_path, image, gpu):
    spec = with_registry(cheapest(gpu), volumes=[volume("a", "/data"), volume("b", "/ckpt")]) if image \
        else cluster_spec(cheapest(gpu), volumes=[volume("a", "/data")])
    script = render_node_setup(spec, 0, ["/dev/sdf", "/dev/sdg"], PASSWORD)
    assert_valid_bash(script, tmp_path)


@pulumi.runtime.test
def test_groups_reservation_and_tags_reach_every_instance(mocks):
    """Node groups get their own instance types; a reservation and the task's tags are on each."""
    head, worker = cheapest(None), cheapest("T4")
    cluster = AwsTaskCluster("run", cluster_spec(head, nodes=3, node_offers=[head, worker, worker],
                                                 host_keys=[], reservation="cr-0123456789abcdef0",
                                                 user_tags={"team": "nlp"}))

    def check(nodes):
        instances = sorted(mocks.of_type("aws:ec2/instance:Instance"), key=lambda r: r.name)
        assert [i.inputs["instanceType"] for i in instances] == [head.instance_type, worker.instance_type,
                                                                 worker.instance_type]
        for instance in instances:
            target = instance.inputs["capacityReservationSpecification"]["capacityReservationTarget"]
            assert target == {"capacityReservationId": "cr-0123456789abcdef0"}
            assert instance.inputs["tags"]["team"] == "nlp" and instance.inputs["tags"]["dstack-iac:run"] == "train-run"
        assert len(nodes) == 3

    return settle(cluster).apply(check)
