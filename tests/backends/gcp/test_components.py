"""The GCP component under Pulumi's mocks (preview=False)."""

from __future__ import annotations

import pulumi
import pytest

from dstack_iac.config.models import ResourcesSpec, SpotPolicy
from dstack_iac.backends.gcp.components import GPU_IMAGE, UBUNTU_IMAGE, GcpTaskCluster
from dstack_iac.model.nodes import NodeEndpoint
from dstack_iac.offers.query import OfferQuery
from tests.offers.catalogs import find_offers
from tests.backends.cloud.mocks import (PASSWORD, RecordingMocks, cluster_spec, is_secret, plain_occurrences,
                                     settle, unwrap, volume, with_registry)


@pytest.fixture
def mocks():
    recorder = RecordingMocks()
    pulumi.runtime.set_mocks(recorder, project="dstack-iac", stack="test", preview=False)
    return recorder


def cheapest(gpu: str | None, spot: bool = False, **query):
    resources = ResourcesSpec.model_validate({"gpu": gpu} if gpu else {})
    return find_offers(OfferQuery(resources=resources, backends=("gcp",),
                                  spot_policy=SpotPolicy.SPOT if spot else SpotPolicy.ON_DEMAND, **query))[0]


@pulumi.runtime.test
def test_n1_with_attached_t4s_on_spot(mocks):
    offer = cheapest("T4:2", spot=True)
    assert offer.instance_type.startswith("n1-") and offer.gpu.count == 2 and offer.spot
    cluster = GcpTaskCluster("run", cluster_spec(offer, disk_gb=150))

    def check(nodes):
        [instance] = mocks.of_type("gcp:compute/instance:Instance")
        inputs = instance.inputs
        assert inputs["machineType"] == offer.instance_type and inputs["zone"] == offer.availability_zone
        assert inputs["guestAccelerators"] == [{"type": "nvidia-tesla-t4", "count": 2}]
        scheduling = inputs["scheduling"]
        assert scheduling["provisioningModel"] == "SPOT" and scheduling["preemptible"] is True
        assert scheduling["onHostMaintenance"] == "TERMINATE" and scheduling["automaticRestart"] is False
        assert inputs["bootDisk"]["initializeParams"] == {"image": GPU_IMAGE, "size": 150}
        assert inputs["labels"]["dstack-iac-run"] == "train-run"
        # The startup script holds the host key: the metadata is stored as a secret.
        assert is_secret(inputs["metadata"])
        metadata = unwrap(inputs["metadata"])
        assert metadata["ssh-keys"].startswith("ubuntu:ssh-ed25519 ")
        assert "ssh_host_ed25519_key" in unwrap(metadata["startup-script"])
        endpoint = NodeEndpoint.model_validate(nodes[0])
        assert (endpoint.address, endpoint.private_address, endpoint.user) == ("198.51.100.10", "10.128.0.10", "ubuntu")

    return settle(cluster).apply(check)


@pulumi.runtime.test
def test_built_in_gpus_need_no_accelerators_and_firewall_mirrors_aws(mocks):
    offer = cheapest("A100:8")
    assert offer.instance_type.startswith("a2-") and not offer.spot
    cluster = GcpTaskCluster("run", cluster_spec(offer, nodes=2))

    def check(_nodes):
        instances = mocks.of_type("gcp:compute/instance:Instance")
        assert len(instances) == 2
        for instance in instances:
            assert not instance.inputs.get("guestAccelerators")
            assert "provisioningModel" not in instance.inputs["scheduling"]
            assert instance.inputs["tags"] == ["dstack-iac-train-run"]
        by_name = {rule.name: rule for rule in mocks.of_type("gcp:compute/firewall:Firewall")}
        ssh, intra = by_name["run-ssh"], by_name["run-intra"]
        assert ssh.inputs["sourceRanges"] == ["198.51.100.7/32"]
        assert ssh.inputs["allows"] == [{"protocol": "tcp", "ports": ["22"]}]
        assert intra.inputs["sourceTags"] == intra.inputs["targetTags"] == ["dstack-iac-train-run"]
        assert "sourceRanges" not in intra.inputs
        assert len(mocks.of_type("gcp:compute/firewall:Firewall")) == 2  # no task port is exposed

    return settle(cluster).apply(check)


@pulumi.runtime.test
def test_persistent_disk_is_attached_and_password_stays_secret(mocks):
    offer = cheapest(None)
    cluster = GcpTaskCluster("run", with_registry(offer, volumes=[volume("my-data", "/data")]))

    def check(_nodes):
        [lookup] = [c for c in mocks.calls if c.token == "gcp:compute/getDisk:getDisk"]
        assert (lookup.args["name"], lookup.args["zone"]) == ("my-data", offer.availability_zone)
        [instance] = mocks.of_type("gcp:compute/instance:Instance")
        [disk] = instance.inputs["attachedDisks"]
        assert disk["source"] == f"projects/p/zones/{offer.availability_zone}/disks/my-data"
        assert instance.inputs["bootDisk"]["initializeParams"]["image"] == UBUNTU_IMAGE
        for resource in mocks.resources:
            assert plain_occurrences(resource.inputs, PASSWORD) == [], resource.typ
        metadata = instance.inputs["metadata"]
        script = unwrap(unwrap(metadata)["startup-script"])
        assert PASSWORD in script and "docker pull registry.example.com/team/train:1" in script

    return settle(cluster).apply(check)


@pulumi.runtime.test
def test_groups_reservation_and_labels_reach_every_instance(mocks):
    head, worker = cheapest(None), cheapest("T4")
    cluster = GcpTaskCluster("run", cluster_spec(head, nodes=2, node_offers=[head, worker], host_keys=[],
                                                 reservation="team-reservation", user_tags={"team": "nlp"}))

    def check(nodes):
        instances = sorted(mocks.of_type("gcp:compute/instance:Instance"), key=lambda r: r.inputs["labels"]["dstack-iac-rank"])
        assert [i.inputs["machineType"] for i in instances] == [head.instance_type, worker.instance_type]
        assert "guestAccelerators" not in instances[0].inputs or not instances[0].inputs["guestAccelerators"]
        for instance in instances:
            assert instance.inputs["reservationAffinity"] == {
                "type": "SPECIFIC_RESERVATION", "specificReservation": {
                    "key": "compute.googleapis.com/reservation-name", "values": ["team-reservation"]}}
            assert instance.inputs["labels"]["team"] == "nlp"

    return settle(cluster).apply(check)
