"""The guardrails pack (policies/dstack-iac-guardrails): each check as a pure function of a
resource's type and properties, then on what the real AWS and GCP components declare (pulumi
mocks). The engine cannot run a policy pack with mocks: mocks replace the engine's resource
monitor inside the Python process, so no engine (and no analyzer) ever sees the resources; the
checks are therefore fed the very inputs the mocks record, which are what the engine would hand
the pack (camelCase, as registered). The pack itself runs in the engine in tests/runs/test_review_e2e.py."""

from __future__ import annotations

import importlib.util
import sys

import pulumi
import pytest

from tests.backends.cloud.mocks import RecordingMocks, cluster_spec, settle, unwrap
from tests.helpers import REPO

PACK_DIR = REPO / "policies" / "dstack-iac-guardrails"


def _load_guardrails():
    spec = importlib.util.spec_from_file_location("dstack_iac_guardrails", PACK_DIR / "guardrails.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


g = _load_guardrails()


def violations(resources, config: dict | None = None) -> dict[str, list[str]]:
    """policy name -> messages, for (type, props) pairs, as the pack reports them."""
    found: dict[str, list[str]] = {}
    for resource_type, props in resources:
        props = {key: unwrap(value) for key, value in props.items()}  # an analyzer sees secrets' values
        for name, (_description, check, _schema) in g.POLICIES.items():
            messages = check(resource_type, props, (config or {}).get(name, {}))
            if messages:
                found.setdefault(name, []).extend(messages)
    return found


SG_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"


@pytest.mark.parametrize("props,open_", [
    ({"cidrIpv4": "0.0.0.0/0", "fromPort": 22, "toPort": 22, "ipProtocol": "tcp"}, True),
    ({"cidrIpv6": "::/0", "fromPort": 0, "toPort": 65535, "ipProtocol": "tcp"}, True),
    ({"cidrIpv4": "0.0.0.0/0", "fromPort": -1, "toPort": -1, "ipProtocol": "-1"}, True),
    ({"cidrIpv4": "198.51.100.7/32", "fromPort": 22, "toPort": 22, "ipProtocol": "tcp"}, False),
    ({"cidrIpv4": "0.0.0.0/0", "fromPort": 443, "toPort": 443, "ipProtocol": "tcp"}, False),
    ({"cidrIpv4": "0.0.0.0/0", "fromPort": 22, "toPort": 22, "ipProtocol": "udp"}, False),
])
def test_ssh_from_anywhere_on_aws_rules(props, open_):
    assert bool(g.ssh_never_from_anywhere(SG_RULE, props, {})) is open_


def test_ssh_from_anywhere_on_gcp_firewalls_and_inline_aws_rules():
    firewall = "gcp:compute/firewall:Firewall"
    assert g.ssh_never_from_anywhere(firewall, {"sourceRanges": ["0.0.0.0/0"],
                                                "allows": [{"protocol": "tcp", "ports": ["20-30"]}]}, {})
    assert g.ssh_never_from_anywhere(firewall, {"sourceRanges": ["0.0.0.0/0"], "allows": [{"protocol": "all"}]}, {})
    assert not g.ssh_never_from_anywhere(firewall, {"sourceRanges": ["0.0.0.0/0"],
                                                    "allows": [{"protocol": "tcp", "ports": ["443"]}]}, {})
    assert not g.ssh_never_from_anywhere(firewall, {"sourceRanges": ["0.0.0.0/0"], "direction": "EGRESS",
                                                    "allows": [{"protocol": "tcp"}]}, {})
    group = "aws:ec2/securityGroup:SecurityGroup"
    assert g.ssh_never_from_anywhere(group, {"ingress": [{"cidrBlocks": ["0.0.0.0/0"], "fromPort": 22,
                                                          "toPort": 22, "protocol": "tcp"}]}, {})


def test_imdsv2_encrypted_disks_and_serial_port():
    instance = "aws:ec2/instance:Instance"
    assert g.aws_imdsv2_required(instance, {"metadataOptions": {"httpTokens": "optional"}}, {})
    assert g.aws_imdsv2_required(instance, {}, {})
    assert not g.aws_imdsv2_required(instance, {"metadataOptions": {"httpTokens": "required"}}, {})
    assert not g.aws_imdsv2_required(instance, {"metadataOptions": {"httpEndpoint": "disabled"}}, {})
    assert g.aws_encrypted_root_disk(instance, {"rootBlockDevice": {"encrypted": False}}, {})
    assert g.aws_encrypted_root_disk(instance, {}, {})
    assert not g.aws_encrypted_root_disk(instance, {"rootBlockDevice": {"encrypted": True}}, {})
    assert g.aws_encrypted_root_disk("aws:ebs/volume:Volume", {"size": 10}, {})
    gcp = "gcp:compute/instance:Instance"
    assert g.gcp_no_serial_port(gcp, {"metadata": {"serial-port-enable": "TRUE"}}, {})
    assert not g.gcp_no_serial_port(gcp, {"metadata": {"serial-port-enable": "FALSE"}}, {})
    assert g.gcp_no_serial_port("gcp:compute/projectMetadataItem:ProjectMetadataItem",
                                {"key": "serial-port-enable", "value": "1"}, {})


def offer(price: float, nodes: int = 1, instance_type: str = "g5.xlarge", rented: bool = True) -> dict:
    return {"backend": "aws", "instanceType": instance_type, "nodes": nodes, "pricePerHour": price,
            "totalPricePerHour": price * nodes, "rented": rented}


def test_price_and_families_are_configurable():
    assert not g.max_price_per_hour(g.OFFER_TYPE, offer(10, nodes=2), {})
    [message] = g.max_price_per_hour(g.OFFER_TYPE, offer(10, nodes=2), {"maxPricePerHour": 15})
    assert "$20/hour" in message and "2 x g5.xlarge" in message and "limit of $15/hour" in message
    assert g.max_price_per_hour(g.OFFER_TYPE, offer(41), {}), "the default limit is $40/hour"
    assert not g.max_nodes_per_run(g.OFFER_TYPE, offer(0, nodes=64), {})
    [message] = g.max_nodes_per_run(g.OFFER_TYPE, offer(0, nodes=2), {"maxNodes": 1})
    assert message == "the run asks for 2 nodes (aws), over the limit of 1 per run"
    assert not g.allowed_instance_families(g.OFFER_TYPE, offer(1), {})
    [message] = g.allowed_instance_families(g.OFFER_TYPE, offer(1), {"families": ["a2"]})
    assert "g5.xlarge (family g5) is not allowed" in message
    assert not g.allowed_instance_families(g.OFFER_TYPE, offer(1, instance_type="local", rented=False),
                                           {"families": ["a2"]}), "machines the user has are not rented by family"
    assert g.instance_family("a2-highgpu-1g") == "a2" and g.instance_family("zones/x/machineTypes/n1-standard-4") == "n1"
    assert g.allowed_instance_families("gcp:compute/instance:Instance", {"machineType": "n1-standard-4"},
                                       {"families": ["a2"]})


@pytest.fixture
def mocks():
    recorder = RecordingMocks()
    pulumi.runtime.set_mocks(recorder, project="dstack-iac", stack="test", preview=False)
    return recorder


def _aws_offer():
    from tests.backends.aws.test_components import cheapest

    return cheapest(None)


def _gcp_offer():
    from tests.backends.gcp.test_components import cheapest

    return cheapest(None)


@pulumi.runtime.test
def test_the_aws_component_passes_the_guardrails_and_an_open_ssh_range_does_not(mocks):
    from dstack_iac.backends.aws.components import AwsTaskCluster

    cluster = AwsTaskCluster("run", cluster_spec(_aws_offer()))
    opened = AwsTaskCluster("open", cluster_spec(_aws_offer(), ssh_cidr="0.0.0.0/0"))

    def check(_):
        mine = [(r.typ, r.inputs) for r in mocks.resources if r.name.startswith("run")]
        theirs = [(r.typ, r.inputs) for r in mocks.resources if r.name.startswith("open")]
        assert {typ for typ, _ in mine} >= {"aws:ec2/instance:Instance", SG_RULE}
        assert violations(mine) == {}
        found = violations(theirs)
        assert list(found) == ["ssh-never-from-anywhere"] and "0.0.0.0/0" in found["ssh-never-from-anywhere"][0]

    return pulumi.Output.all(settle(cluster), settle(opened)).apply(check)


@pulumi.runtime.test
def test_the_gcp_component_passes_the_guardrails_and_an_open_ssh_range_does_not(mocks):
    from dstack_iac.backends.gcp.components import GcpTaskCluster

    cluster = GcpTaskCluster("run", cluster_spec(_gcp_offer()))
    opened = GcpTaskCluster("open", cluster_spec(_gcp_offer(), ssh_cidr="0.0.0.0/0"))

    def check(_):
        mine = [(r.typ, r.inputs) for r in mocks.resources if r.name.startswith("run")]
        theirs = [(r.typ, r.inputs) for r in mocks.resources if r.name.startswith("open")]
        assert {typ for typ, _ in mine} >= {"gcp:compute/instance:Instance", "gcp:compute/firewall:Firewall"}
        instance = next(props for typ, props in mine if typ == "gcp:compute/instance:Instance")
        assert unwrap(instance["metadata"])["serial-port-enable"] == "FALSE"
        assert violations(mine) == {}
        assert list(violations(theirs)) == ["ssh-never-from-anywhere"]
        tampered = [(typ, {**props, "metadata": {**unwrap(props["metadata"]), "serial-port-enable": "TRUE"}})
                    for typ, props in mine if typ == "gcp:compute/instance:Instance"]
        assert list(violations(tampered)) == ["gcp-no-serial-port"]

    return pulumi.Output.all(settle(cluster), settle(opened)).apply(check)
