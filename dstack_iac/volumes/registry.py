"""Volume records in the state dir (`volumes/<name>/volume.json`): what `volume list` and
planning read without opening any stack."""

from __future__ import annotations

import os
import time

from pydantic import BaseModel

from dstack_iac.paths import ensure_private_dir, volumes_dir


class VolumeRecord(BaseModel):
    name: str
    backend: str
    region: str | None = None
    availability_zone: str | None = None
    size_gb: float | None = None
    volume_id: str | None = None
    registered: bool = False  # an existing disk: deleting the volume forgets it, never deletes it
    directory: str | None = None  # local volumes: where the data lives
    configuration: str = ""
    created_at: float = 0.0


def _path(name: str):
    return volumes_dir() / name / "volume.json"


def save(record: VolumeRecord) -> None:
    directory = ensure_private_dir(volumes_dir() / record.name)
    partial = directory / f"volume.json.{os.getpid()}.tmp"
    partial.write_text(record.model_dump_json(indent=2))
    partial.replace(directory / "volume.json")


def load(name: str) -> VolumeRecord | None:
    try:
        return VolumeRecord.model_validate_json(_path(name).read_text())
    except (OSError, ValueError):
        return None


def all_volumes() -> list[VolumeRecord]:
    if not volumes_dir().is_dir():
        return []
    found = [load(entry.name) for entry in sorted(volumes_dir().iterdir()) if entry.is_dir()]
    return [record for record in found if record is not None]


def forget(name: str) -> None:
    _path(name).unlink(missing_ok=True)
    try:
        (volumes_dir() / name).rmdir()
    except OSError:
        pass


def now() -> float:
    return time.time()
