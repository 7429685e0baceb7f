"""AWS nodes are hardened: each property checked on what the component asks EC2 for (mocks)."""

from __future__ import annotations

import pulumi
import pytest

from dstack_iac.backends.aws.components import AwsTaskCluster, AwsVolume
from tests.backends.aws.test_components import cheapest
from tests.backends.cloud.mocks import RecordingMocks, cluster_spec, settle, unwrap, volume, with_registry

TAGS = {"dstack-iac:run": "train-run", "dstack-iac:owner": "alice", "dstack-iac:expires-at": "2027-01-15T08:00:00Z"}


@pytest.fixture
def mocks():
    recorder = RecordingMocks()
    pulumi.runtime.set_mocks(recorder, project="dstack-iac", stack="test", preview=False)
    return recorder


def instances(mocks) -> list:
    return mocks.of_type("aws:ec2/instance:Instance")


@pulumi.runtime.test
def test_imdsv2_is_required_with_one_hop_on_the_host(mocks):
    cluster = AwsTaskCluster("run", cluster_spec(cheapest(None)))

    def check(_):
        [instance] = instances(mocks)
        assert instance.inputs["metadataOptions"] == {"httpTokens": "required", "httpEndpoint": "enabled",
                                                      "httpPutResponseHopLimit": 1}

    return settle(cluster).apply(check)


@pulumi.runtime.test
def test_a_container_gets_the_second_hop_it_needs(mocks):
    cluster = AwsTaskCluster("run", with_registry(cheapest("T4")))
    return settle(cluster).apply(
        lambda _: instances(mocks)[0].inputs["metadataOptions"]["httpPutResponseHopLimit"] == 2 or pytest.fail())


@pulumi.runtime.test
def test_root_disks_and_volumes_are_encrypted_gp3(mocks):
    cluster = AwsTaskCluster("run", cluster_spec(cheapest(None), nodes=2))

    def check(_):
        for instance in instances(mocks):
            root = instance.inputs["rootBlockDevice"]
            assert (root["encrypted"], root["volumeType"], root["deleteOnTermination"]) == (True, "gp3", True)

    return settle(cluster).apply(check)


@pulumi.runtime.test
def test_a_volume_created_for_runs_is_encrypted(mocks):
    created = AwsVolume("volume", volume_name="data", region="us-east-1", availability_zone="us-east-1a", size_gb=10)
    return created.volume_id.apply(
        lambda _: mocks.of_type("aws:ebs/volume:Volume")[0].inputs["encrypted"] is True or pytest.fail())


@pulumi.runtime.test
def test_a_shutdown_terminates_and_the_lease_shuts_the_node_down(mocks):
    cluster = AwsTaskCluster("run", cluster_spec(cheapest(None)))

    def check(_):
        [instance] = instances(mocks)
        assert instance.inputs["instanceInitiatedShutdownBehavior"] == "terminate"
        script = unwrap(instance.inputs["userData"])
        assert "-gt 600 ]; then shutdown -h now; fi" in script and "/opt/dstack-iac/run/lease" in script
        # The lease starts counting once the node is ready, not while it boots.
        assert script.index("dstack-iac-lease") < script.index("touch /opt/dstack-iac/ready")

    return settle(cluster).apply(check)


@pulumi.runtime.test
def test_every_taggable_resource_carries_run_owner_and_expiry(mocks):
    cluster = AwsTaskCluster("run", cluster_spec(cheapest(None), nodes=2, volumes=[volume("d", "/d")]))

    def check(_):
        tagged = [r for r in mocks.resources if "tags" in r.inputs]
        types = {r.typ for r in tagged}
        assert {"aws:ec2/instance:Instance", "aws:ec2/securityGroup:SecurityGroup", "aws:ec2/keyPair:KeyPair",
                "aws:ec2/placementGroup:PlacementGroup", "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"} <= types
        for resource in tagged:
            assert TAGS.items() <= resource.inputs["tags"].items(), resource.typ
        for instance in instances(mocks):  # the root disks too
            assert TAGS.items() <= instance.inputs["volumeTags"].items()

    return settle(cluster).apply(check)


@pulumi.runtime.test
def test_ssh_is_the_only_ingress_and_only_from_the_caller(mocks):
    cluster = AwsTaskCluster("run", cluster_spec(cheapest(None)))

    def check(_):
        rules = mocks.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        from_outside = [r for r in rules if "cidrIpv4" in r.inputs]
        assert [(r.inputs["cidrIpv4"], r.inputs["fromPort"], r.inputs["toPort"]) for r in from_outside] == \
            [("198.51.100.7/32", 22, 22)]
        assert all("referencedSecurityGroupId" in r.inputs for r in rules if r not in from_outside)
        assert not any(unwrap(r.inputs).get("ingress") for r in mocks.of_type("aws:ec2/securityGroup:SecurityGroup"))

    return settle(cluster).apply(check)
