"""AwsVolume and GcpVolume under Pulumi's mocks (preview=False)."""

from __future__ import annotations

import pulumi
import pytest

from dstack_iac.backends.aws.components import AwsVolume
from dstack_iac.backends.gcp.components import GcpVolume
from tests.backends.cloud.mocks import RecordingMocks


@pytest.fixture
def mocks():
    recorder = RecordingMocks()
    pulumi.runtime.set_mocks(recorder, project="dstack-iac", stack="test", preview=False)
    return recorder


@pulumi.runtime.test
def test_aws_volume_is_a_tagged_gp3_disk_in_its_zone(mocks):
    volume = AwsVolume("volume", volume_name="my-data", region="eu-west-1", availability_zone="eu-west-1b", size_gb=250)

    def check(_):
        [disk] = mocks.of_type("aws:ebs/volume:Volume")
        assert (disk.inputs["availabilityZone"], disk.inputs["size"], disk.inputs["type"]) == ("eu-west-1b", 250, "gp3")
        assert disk.inputs["region"] == "eu-west-1"
        # Runs find it by this tag (see AwsTaskCluster's lookup).
        assert disk.inputs["tags"]["Name"] == "my-data"

    return volume.volume_id.apply(check)


@pulumi.runtime.test
def test_aws_registered_volume_is_looked_up_not_created(mocks):
    volume = AwsVolume("volume", volume_name="old", region="us-east-1", availability_zone="us-east-1a",
                       volume_id="vol-0abc123")

    def check(volume_id):
        assert volume_id == "vol-0abc123"
        assert mocks.of_type("aws:ebs/volume:Volume") == []
        [lookup] = [c for c in mocks.calls if c.token == "aws:ebs/getVolume:getVolume"]
        assert lookup.args["filters"] == [{"name": "volume-id", "values": ["vol-0abc123"]}]

    return volume.volume_id.apply(check)


@pulumi.runtime.test
def test_gcp_volume_is_a_named_zonal_disk(mocks):
    volume = GcpVolume("volume", volume_name="my-data", zone="us-central1-a", size_gb=100)

    def check(_):
        [disk] = mocks.of_type("gcp:compute/disk:Disk")
        assert (disk.inputs["name"], disk.inputs["zone"], disk.inputs["size"]) == ("my-data", "us-central1-a", 100)
        assert disk.inputs["labels"] == {"dstack-iac-volume": "my-data"}

    return volume.availability_zone.apply(check)
