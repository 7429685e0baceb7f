"""Volume records in the state dir (`volumes/<name>/volume.json`): what `volume list` and
planning read without opening any stack."""

from __future__ import annotations

import time

from pydantic import BaseModel

from dstack_iac.paths import volumes_dir, write_private


class VolumeRecord(BaseModel):
    name: str
    backend: str
    region: str | None = None
    availability_zone: str | None = None
    size_gb: float | None = None
    volume_id: str | None = None
    registered: bool = False  # an existing disk: deleting the volume forgets it, never deletes it
    directory: str | None = None  # local volumes: where the data lives
    source: str | None = None  # what a run mounts, as the backend said: a directory, a disk's id
    configuration: str = ""
    created_at: float = 0.0

    @property
    def mount_source(self) -> str:
        return self.source or self.directory or self.volume_id or self.name


def _path(name: str):
    return volumes_dir() / name / "volume.json"


def save(record: VolumeRecord) -> None:
    """This machine's record, and the backend's, which `volume list` of everyone sharing it reads."""
    write_private(_path(record.name), record.model_dump_json(indent=2))
    from dstack_iac.errors import DstackIacError
    from dstack_iac.state import backend_records, identity

    try:
        backend_records.publish_object("volumes", record.name, {**record.model_dump(mode="json"),
                                                                "host": identity.host_name(),
                                                                "owner": identity.owner()})
    except DstackIacError:
        # The volume exists and this machine's record says so; `volume list` elsewhere misses it
        # until the backend can be written again (the next save publishes it).
        pass


def load(name: str) -> VolumeRecord | None:
    try:
        return VolumeRecord.model_validate_json(_path(name).read_text())
    except (OSError, ValueError):
        return None


def shared_volumes() -> list[tuple[VolumeRecord, str, str]]:
    """Volumes of everyone sharing the backend: (record, owner, host), this machine's included."""
    from dstack_iac.state import backend_records

    found = []
    for data in backend_records.list_objects("volumes").values():
        try:
            found.append((VolumeRecord.model_validate(data), str(data.get("owner", "")), str(data.get("host", ""))))
        except ValueError:
            continue
    return sorted(found, key=lambda item: item[0].name)


def all_volumes() -> list[VolumeRecord]:
    if not volumes_dir().is_dir():
        return []
    found = [load(entry.name) for entry in sorted(volumes_dir().iterdir()) if entry.is_dir()]
    return [record for record in found if record is not None]


def forget(name: str) -> None:
    from dstack_iac.state import backend_records

    backend_records.forget_object("volumes", name)
    _path(name).unlink(missing_ok=True)
    try:
        (volumes_dir() / name).rmdir()
    except OSError:
        pass


def now() -> float:
    return time.time()
