"""AWS: the bucket that keeps `--build` results for one region (its own long-lived stack,
`storage-aws-<region>`, see runs/build_cache.py), and one object per stored build.

The bucket is private in every way S3 offers (public access blocked, ACLs disabled, encrypted at
rest); objects are the build archives, keyed `builds/<key>.tar.gz`, their node fingerprint in
their metadata.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws

from dstack_iac.backends.cloud.storage import ARCHIVE_PREFIX, StoredArchive, bucket_tags


class AwsBuildStorage(pulumi.ComponentResource):
    """Outputs: `bucket` (its name)."""

    bucket_name: pulumi.Output[str]

    def __init__(self, name: str, *, region: str, archives: Mapping[str, StoredArchive],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("dstack-iac:aws:BuildStorage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = bucket_tags("aws", region)
        self.bucket = aws.s3.Bucket(f"{name}-bucket", region=region, bucket_prefix="dstack-iac-builds-",
                                    force_destroy=True, tags=tags, opts=child)
        after_bucket = pulumi.ResourceOptions(parent=self, depends_on=[self.bucket])
        self.public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-private", region=region, bucket=self.bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=after_bucket)
        self.ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership", region=region, bucket=self.bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"}, opts=after_bucket)
        self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", region=region, bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}], opts=after_bucket)
        objects_opts = pulumi.ResourceOptions(parent=self, depends_on=[self.public_access, self.encryption])
        self.objects = [
            aws.s3.BucketObjectv2(
                f"{name}-{key}", region=region, bucket=self.bucket.id, key=f"{ARCHIVE_PREFIX}{key}.tar.gz",
                source=pulumi.FileAsset(archive.path), content_type="application/gzip",
                server_side_encryption="AES256", metadata={"fingerprint": archive.fingerprint}, tags=tags,
                opts=objects_opts)
            for key, archive in sorted(archives.items())
        ]
        self.bucket_name = self.bucket.bucket
        self.register_outputs({"bucket": self.bucket_name})
