"""A local network volume: a directory under the state dir, as a Pulumi dynamic resource.

Runs bind-mount it at the task's `path` inside a private mount namespace (see
execution/mounts.py); deleting the resource deletes the data.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider


class LocalVolumeProvider(ResourceProvider):
    def create(self, props: dict) -> CreateResult:
        data = Path(props["directory"])
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        return CreateResult(id_=props["volume_name"], outs={**props})

    def diff(self, _id: str, olds: dict, news: dict) -> DiffResult:
        changed = [key for key in ("volume_name", "directory") if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=True)

    def delete(self, _id: str, props: dict) -> None:
        shutil.rmtree(props["directory"], ignore_errors=True)


class LocalVolume(Resource):
    """Outputs: directory (where the data lives on this machine)."""

    directory: pulumi.Output[str]

    def __init__(self, name: str, *, volume_name: str, directory: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__(LocalVolumeProvider(), name, {"volume_name": volume_name, "directory": directory}, opts)
