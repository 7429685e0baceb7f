"""Create and delete volumes: each is its own long-lived Pulumi stack (`volume-<name>`)."""

from __future__ import annotations

from collections.abc import Callable

from dstack_iac.config.models import VolumeConfiguration
from dstack_iac.infra.stack import RunStack, stack_exists
from dstack_iac.infra.volume_program import volume_program, volume_stack_name
from dstack_iac.runs import registry as runs
from dstack_iac.volumes import registry
from dstack_iac.volumes.registry import VolumeRecord


class VolumeError(Exception):
    exit_code = 1


class VolumeInUse(VolumeError):
    pass


def users_of(name: str) -> list[str]:
    """Active runs (orphaned ones included) that mount the volume."""
    return [r.name for r in runs.all_runs() if r.effective_status.active and name in r.volumes]


def create_volume(volume: VolumeConfiguration, configuration_path: str, on_event: Callable | None = None) -> VolumeRecord:
    if registry.load(volume.name) is not None:
        raise VolumeError(f"a volume named {volume.name!r} exists already (see `dstack-iac volume list`)")
    if volume.backend != "local":
        from dstack_iac.infra.cloud.credentials import require_credentials

        require_credentials(volume.backend)
    stack = RunStack(volume_stack_name(volume.name), volume_program(volume))
    stack.set_tags({"volume": volume.name, "backend": volume.backend, "configuration": configuration_path})
    try:
        outputs = stack.up_raw(on_event=on_event)
    except BaseException:
        # A half-created volume is not left behind.
        stack.destroy_and_remove()
        raise
    record = VolumeRecord(
        name=volume.name, backend=volume.backend, region=volume.region,
        availability_zone=outputs.get("availability_zone") or volume.zone, size_gb=volume.size,
        volume_id=outputs.get("volume_id"), registered=bool(volume.volume_id), directory=outputs.get("directory"),
        configuration=configuration_path, created_at=registry.now(),
    )
    registry.save(record)
    return record


def delete_volume(name: str, on_event: Callable | None = None) -> VolumeRecord:
    record = registry.load(name)
    if record is None:
        raise VolumeError(f"no volume named {name!r} (see `dstack-iac volume list`)")
    users = users_of(name)
    if users:
        raise VolumeInUse(f"volume {name!r} is in use by {', '.join(users)}: stop {'them' if len(users) > 1 else 'it'} "
                          f"first (`dstack-iac stop {users[0]}`)")
    stack_name = volume_stack_name(name)
    if stack_exists(stack_name):
        RunStack(stack_name).destroy_and_remove(on_event=on_event)
    registry.forget(name)
    return record
