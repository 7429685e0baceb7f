"""GCP: the bucket that keeps `--build` results for one region (its own long-lived stack,
`storage-gcp-<region>`, see runs/build_cache.py), and one object per stored build.

Uniform bucket-level access (no object ACLs), public access prevented, in the region itself;
objects are the build archives, keyed `builds/<key>.tar.gz`, their node fingerprint in their
metadata.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_gcp as gcp

from dstack_iac.backends.cloud.storage import ARCHIVE_PREFIX, StoredArchive, bucket_tags
from dstack_iac.backends.gcp.components import gcp_label


class GcpBuildStorage(pulumi.ComponentResource):
    """Outputs: `bucket` (its name)."""

    bucket_name: pulumi.Output[str]

    def __init__(self, name: str, *, region: str, archives: Mapping[str, StoredArchive],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("dstack-iac:gcp:BuildStorage", name, None, opts)
        labels = {gcp_label(key): gcp_label(value) for key, value in bucket_tags("gcp", region).items()}
        self.bucket = gcp.storage.Bucket(
            f"{name}-bucket", location=region.upper(), uniform_bucket_level_access=True,
            public_access_prevention="enforced", force_destroy=True, labels=labels,
            opts=pulumi.ResourceOptions(parent=self))
        self.objects = [
            gcp.storage.BucketObject(
                f"{name}-{key}", bucket=self.bucket.name, name=f"{ARCHIVE_PREFIX}{key}.tar.gz",
                source=pulumi.FileAsset(archive.path), content_type="application/gzip",
                metadata={"fingerprint": archive.fingerprint}, opts=pulumi.ResourceOptions(parent=self))
            for key, archive in sorted(archives.items())
        ]
        self.bucket_name = self.bucket.name
        self.register_outputs({"bucket": self.bucket_name})
