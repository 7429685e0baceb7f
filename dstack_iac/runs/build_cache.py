"""`--build` results that outlive a cloud node: each region's bucket, a long-lived stack of its
own (`storage-<backend>-<region>`, like a volume's), declared with the backend's Pulumi
components (pulumi-aws, pulumi-gcp).

The build itself happens on the node (execution/build.py): its cache is a directory of the
node's machine. For local (and SSH fleet) runs that machine stays, so nothing more is needed.
A cloud VM goes with its run, so:

- before the commands, when the region's storage holds the key's archive, it is restored into
  every node's build cache (over the run's SSH connection), and the node reuses it;
- after the commands, when node 0 built a new archive, it is fetched, kept under the state dir
  (`storage/<stack>/<key>.tar.gz`: the stack's assets), and the storage stack is updated with
  one more bucket object.

The archives travel through this machine because it holds the cloud credentials (the nodes hold
none); the bucket is where they are kept for as long as the storage stack lives.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from dstack_iac.execution.build import build_key, cacheable
from dstack_iac.execution.sync import fetch_file
from dstack_iac.model.backend import Backend
from dstack_iac.model.plan import RunPlan
from dstack_iac.paths import ensure_private_dir, state_dir, write_private
from dstack_iac.runs.hooks import RunHook

if TYPE_CHECKING:
    from dstack_iac.runs.lifecycle import Run

STORAGE_PREFIX = "storage-"


def storage_stack_name(backend: str, region: str) -> str:
    return f"{STORAGE_PREFIX}{backend}-{region}"


class StoredBuild(BaseModel):
    fingerprint: str
    size: int
    stored_at: float


class StorageRecord(BaseModel):
    stack: str
    backend: str
    region: str
    bucket: str | None = None
    builds: dict[str, StoredBuild] = {}


class BuildStorage:
    """One region's storage: its record and archives in the state dir, its stack in the engine."""

    def __init__(self, backend: Backend, region: str):
        self.backend = backend
        self.region = region
        self.stack_name = storage_stack_name(backend.name, region)
        self.directory = state_dir() / "storage" / self.stack_name

    @property
    def record_path(self) -> Path:
        return self.directory.parent / f"{self.stack_name}.json"

    def record(self) -> StorageRecord:
        try:
            return StorageRecord.model_validate_json(self.record_path.read_text())
        except (OSError, ValueError):
            return StorageRecord(stack=self.stack_name, backend=self.backend.name, region=self.region)

    def archive_path(self, key: str) -> Path:
        return self.directory / f"{key}.tar.gz"

    def stored(self, key: str) -> StoredBuild | None:
        build = self.record().builds.get(key)
        return build if build is not None and self.archive_path(key).is_file() else None

    def program(self, record: StorageRecord, resolved: dict | None = None):
        """The storage stack: the bucket and one object per archive kept here; `resolved` gets
        the outputs' values."""
        archives = {key: {"path": str(self.archive_path(key)), "fingerprint": build.fingerprint}
                    for key, build in record.builds.items() if self.archive_path(key).is_file()}

        def program() -> None:
            import pulumi

            outputs = self.backend.declare_build_storage("storage", self.region, archives)
            for name, value in outputs.items():
                pulumi.export(name, value)
                if resolved is not None:
                    pulumi.Output.from_input(value).apply(lambda v, name=name: resolved.__setitem__(name, v))

        return program

    def store(self, key: str, archive: bytes, fingerprint: str, on_event=None) -> StorageRecord:
        """Keep the archive here and in the bucket (the stack is created the first time)."""
        from dstack_iac.infra.stack import ManagedStack, stack_exists

        ensure_private_dir(self.directory)
        write_private(self.archive_path(key), archive)
        record = self.record()
        record.builds[key] = StoredBuild(fingerprint=fingerprint, size=len(archive), stored_at=time.time())
        stack = ManagedStack(self.stack_name)
        if not stack_exists(self.stack_name):
            stack.create()
        resolved: dict = {}
        stack.up(self.program(record, resolved), on_event=on_event)
        record.bucket = resolved.get("bucket", record.bucket)
        write_private(self.record_path, record.model_dump_json(indent=2))
        return record


class StoredBuildHook(RunHook):
    """Restores a stored build on every node before the commands; stores a new one after."""

    name = "build storage"

    def __init__(self, storage: BuildStorage, key: str):
        self.storage = storage
        self.key = key
        self.restored = False

    def _cache_of(self, run: Run, session) -> str:
        return run.backend.node_runtime(run.plan, session.endpoint).build_cache

    def nodes_ready(self, run: Run) -> None:
        stored = self.storage.stored(self.key)
        if stored is None or run.plan.force_build:
            return
        archive = self.storage.archive_path(self.key).read_bytes()
        run.ui.say(f"Restoring the pre-built environment {self.key} from {self.storage.stack_name} "
                   f"({len(archive) / 1024**2:.1f} MB)...")

        def restore(session) -> None:
            cache = self._cache_of(run, session)
            session.command_output(f"mkdir -p {shlex.quote(cache)}")
            session.put_private(archive, f"{cache}/{self.key}.tar.gz")
            session.put_private((stored.fingerprint + "\n").encode(), f"{cache}/{self.key}.tar.gz.fingerprint")

        run.group.each(restore).raise_first()
        self.restored = True

    @contextlib.contextmanager
    def executing(self, run: Run) -> Iterator[None]:
        yield
        if self.restored:
            return
        try:
            session = run.group.master
            cache = self._cache_of(run, session)
            fingerprint = fetch_file(session, f"{cache}/{self.key}.tar.gz.fingerprint")
            archive = fetch_file(session, f"{cache}/{self.key}.tar.gz") if fingerprint else None
            if archive is None:
                return
            run.ui.say(f"Storing the built environment {self.key} in {self.storage.stack_name} "
                       f"({len(archive) / 1024**2:.1f} MB)...")
            record = self.storage.store(self.key, archive, fingerprint.decode().strip(), on_event=run.progress)
            run.ui.say(f"Stored: later runs with the same build inputs reuse it (bucket {record.bucket or 'ready'})")
        except Exception as exc:  # noqa: BLE001 - keeping the build is a convenience; the run has its result
            run.ui.warn(f"The built environment could not be stored ({type(exc).__name__}: {exc}); the next run "
                        "builds again")


def build_hooks(plan: RunPlan, backend: Backend) -> list[RunHook]:
    """The storage hook when the backend keeps builds off the nodes and this run's build is
    cacheable; nothing otherwise."""
    region = backend.build_storage_region(plan)
    if region is None or not plan.build:
        return []
    runtime = backend.node_runtime(plan, _master_placeholder(plan))
    if not cacheable(plan, runtime):
        return []
    return [StoredBuildHook(BuildStorage(backend, region), build_key(plan))]


def _master_placeholder(plan: RunPlan):
    """node_runtime needs an endpoint; the build cache's place does not depend on which."""
    from dstack_iac.model.nodes import NodeEndpoint

    return NodeEndpoint(rank=0, address="", private_address="", port=22, user="", host_key="", working_dir="/")
