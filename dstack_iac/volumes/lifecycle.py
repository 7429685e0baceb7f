"""Create and delete volumes: each is its own long-lived Pulumi stack (`volume-<name>`)."""

from __future__ import annotations

from collections.abc import Callable

from dstack_iac.backends.registry import get_backend
from dstack_iac.config.models import VOLUME_STACK_PREFIX, VolumeConfiguration
from dstack_iac.errors import BadInput, Conflict
from dstack_iac.infra.program import volume_program
from dstack_iac.infra.stack import ManagedStack, stack_exists
from dstack_iac.state import volumes
from dstack_iac.state.volumes import VolumeRecord


class VolumeExists(Conflict):
    pass


class VolumeInUse(Conflict):
    pass


class UnknownVolume(BadInput):
    pass


def volume_stack_name(name: str) -> str:
    return f"{VOLUME_STACK_PREFIX}{name}"


def users_of(name: str) -> list[str]:
    """Active runs (orphaned ones included, anyone's sharing the backend) that mount the volume."""
    from dstack_iac.state.team import list_runs

    return [view.name for view in list_runs() if view.status.active and name in view.record.volumes]


def create_volume(volume: VolumeConfiguration, configuration_path: str, on_event: Callable | None = None) -> VolumeRecord:
    if volumes.load(volume.name) is not None:
        raise VolumeExists(f"a volume named {volume.name!r} exists already (see `dstack-iac volume list`)")
    backend = get_backend(volume.backend)
    backend.check_access()
    outputs: dict = {}
    stack = ManagedStack(volume_stack_name(volume.name))
    stack.create()
    try:
        stack.up(volume_program(volume, backend, on_outputs=outputs.update), on_event=on_event)
    except BaseException:
        # A half-created volume is not left behind.
        stack.destroy(remove=True)
        raise
    stack.set_tags({"dstack-iac:volume": volume.name, "dstack-iac:backend": volume.backend})
    record = VolumeRecord(
        name=volume.name, backend=volume.backend, region=volume.region,
        availability_zone=outputs.get("availability_zone") or backend.volume_zone(volume), size_gb=volume.size,
        volume_id=outputs.get("volume_id"), registered=bool(volume.volume_id), directory=outputs.get("directory"),
        source=outputs.get("source"), configuration=configuration_path, created_at=volumes.now(),
    )
    volumes.save(record)
    return record


def delete_volume(name: str, on_event: Callable | None = None) -> VolumeRecord:
    record = volumes.load(name)
    if record is None:
        raise UnknownVolume(f"no volume named {name!r} (see `dstack-iac volume list`)")
    users = users_of(name)
    if users:
        raise VolumeInUse(f"volume {name!r} is in use by {', '.join(users)}: stop {'them' if len(users) > 1 else 'it'} "
                          f"first (`dstack-iac stop {users[0]}`)")
    stack_name = volume_stack_name(name)
    if stack_exists(stack_name):
        ManagedStack(stack_name).destroy(on_event=on_event, remove=True)
    volumes.forget(name)
    return record
