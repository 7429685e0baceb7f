"""What the clouds' build storage components share: how archives are named and described, and
how the bucket is tagged (never `dstack-iac:run`: it belongs to no run, and the sweepers that
look for runs' leftovers must not take it for one)."""

from __future__ import annotations

import getpass

from pydantic import BaseModel, ConfigDict

ARCHIVE_PREFIX = "builds/"


class StoredArchive(BaseModel):
    """One build archive on this machine, declared as an object of the bucket."""

    model_config = ConfigDict(frozen=True)

    path: str
    fingerprint: str  # the node's interpreter version, machine and libc it was built with


def bucket_tags(backend: str, region: str) -> dict[str, str]:
    return {"dstack-iac:storage": f"{backend}-{region}", "dstack-iac:owner": getpass.getuser()}
