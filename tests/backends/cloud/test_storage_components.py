"""The clouds' `--build` storage (a bucket per region, one object per kept archive) under
Pulumi's mocks (preview=False), declared as the storage stack's program declares it: through
the backend's `declare_build_storage`."""

from __future__ import annotations

import pulumi
import pytest

from dstack_iac.backends.aws.backend import AwsBackend
from dstack_iac.backends.cloud.storage import StoredArchive
from dstack_iac.backends.gcp.backend import GcpBackend
from tests.backends.cloud.mocks import RecordingMocks


class StorageMocks(RecordingMocks):
    def new_resource(self, args):
        resource_id, outputs = super().new_resource(args)
        if args.typ == "aws:s3/bucket:Bucket":  # AWS names a bucket from its prefix
            outputs["bucket"] = f"{args.inputs['bucketPrefix']}0a1b2c"
        if args.typ == "gcp:storage/bucket:Bucket":  # Pulumi names it (auto-naming)
            outputs["name"] = f"{args.name}-7d8e9f"
        return [resource_id, outputs]


@pytest.fixture
def mocks():
    recorder = StorageMocks()
    pulumi.runtime.set_mocks(recorder, project="dstack-iac", stack="storage-test", preview=False)
    return recorder


@pytest.fixture
def archives(tmp_path):
    kept = {}
    for key in ("b2", "a1"):
        path = tmp_path / f"{key}.tar.gz"
        path.write_bytes(b"\x1f\x8b archive " + key.encode())
        kept[key] = {"path": str(path), "fingerprint": "3.11.7 x86_64 Linux glibc-2.36"}
    return kept


def _asset_path(value) -> str:
    return value.path if isinstance(value, pulumi.FileAsset) else value["path"]


def _declared(component) -> pulumi.Output:
    """The bucket's name once every object is registered too (outputs resolve as soon as their
    own inputs do, before unrelated siblings exist)."""
    return pulumi.Output.all(component.bucket_name, *(o.id for o in component.objects)).apply(lambda v: v[0])


def _stored(archives) -> dict[str, StoredArchive]:
    return {key: StoredArchive.model_validate(archive) for key, archive in archives.items()}


@pulumi.runtime.test
def test_aws_storage_is_a_private_encrypted_bucket_with_one_object_per_archive(mocks, archives):
    component = AwsBackend().storage_component("storage", "eu-west-1", _stored(archives))

    def check(bucket_name):
        assert bucket_name == "dstack-iac-builds-0a1b2c"
        [bucket] = mocks.of_type("aws:s3/bucket:Bucket")
        assert bucket.inputs["region"] == "eu-west-1" and bucket.inputs["forceDestroy"] is True
        # Its tags say it is storage, never a run's: the run sweepers must not take it.
        assert bucket.inputs["tags"]["dstack-iac:storage"] == "aws-eu-west-1"
        assert "dstack-iac:run" not in bucket.inputs["tags"]
        [block] = mocks.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
        assert all(block.inputs[flag] is True for flag in
                   ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
        [ownership] = mocks.of_type("aws:s3/bucketOwnershipControls:BucketOwnershipControls")
        assert ownership.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"
        [encryption] = mocks.of_type(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
        assert encryption.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
        objects = mocks.of_type("aws:s3/bucketObjectv2:BucketObjectv2")
        assert [o.inputs["key"] for o in objects] == ["builds/a1.tar.gz", "builds/b2.tar.gz"]
        for item, key in zip(objects, ("a1", "b2")):
            assert item.inputs["bucket"] == "storage-bucket-id" and item.inputs["region"] == "eu-west-1"
            assert item.inputs["serverSideEncryption"] == "AES256"
            assert item.inputs["metadata"] == {"fingerprint": "3.11.7 x86_64 Linux glibc-2.36"}
            assert _asset_path(item.inputs["source"]) == archives[key]["path"]
        for resource in [block, ownership, encryption]:
            assert resource.inputs["bucket"] == "storage-bucket-id" and resource.inputs["region"] == "eu-west-1"

    return _declared(component).apply(check)


@pulumi.runtime.test
def test_the_storage_program_declares_the_bucket_alone_without_archives(mocks):
    # What BuildStorage.program calls: the backend's declaration, outputs `bucket`.
    outputs = AwsBackend().declare_build_storage("storage", "us-east-1", {})

    def check(bucket_name):
        assert bucket_name == "dstack-iac-builds-0a1b2c"
        assert len(mocks.of_type("aws:s3/bucket:Bucket")) == 1
        assert mocks.of_type("aws:s3/bucketObjectv2:BucketObjectv2") == []

    return outputs["bucket"].apply(check)


@pulumi.runtime.test
def test_gcp_storage_is_a_uniform_access_bucket_in_the_region_with_one_object_per_archive(mocks, archives):
    component = GcpBackend().storage_component("storage", "us-central1", _stored(archives))

    def check(bucket_name):
        [bucket] = mocks.of_type("gcp:storage/bucket:Bucket")
        assert bucket_name == "storage-bucket-7d8e9f"
        assert bucket.inputs["location"] == "US-CENTRAL1"
        assert bucket.inputs["uniformBucketLevelAccess"] is True
        assert bucket.inputs["publicAccessPrevention"] == "enforced"
        # GCP labels are lowercase with dashes; storage, never a run's.
        assert bucket.inputs["labels"]["dstack-iac-storage"] == "gcp-us-central1"
        assert "dstack-iac-run" not in bucket.inputs["labels"]
        objects = mocks.of_type("gcp:storage/bucketObject:BucketObject")
        assert [o.inputs["name"] for o in objects] == ["builds/a1.tar.gz", "builds/b2.tar.gz"]
        for item, key in zip(objects, ("a1", "b2")):
            assert item.inputs["bucket"] == "storage-bucket-7d8e9f"
            assert item.inputs["metadata"] == {"fingerprint": "3.11.7 x86_64 Linux glibc-2.36"}
            assert item.inputs["contentType"] == "application/gzip"
            assert _asset_path(item.inputs["source"]) == archives[key]["path"]

    return _declared(component).apply(check)
