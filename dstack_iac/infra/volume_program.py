"""The Pulumi program of a volume's long-lived stack (one stack per volume, named `volume-<name>`).

Every backend exports `volume_id` and `availability_zone`; local volumes also `directory`.
"""

from __future__ import annotations

from collections.abc import Callable

from dstack_iac.config.models import VOLUME_STACK_PREFIX, VolumeConfiguration
from dstack_iac.paths import volumes_dir

def volume_stack_name(name: str) -> str:
    return f"{VOLUME_STACK_PREFIX}{name}"


def local_volume_directory(name: str) -> str:
    return str(volumes_dir() / name / "data")


def volume_program(volume: VolumeConfiguration) -> Callable[[], None]:
    def program() -> None:
        import pulumi

        if volume.backend == "local":
            from dstack_iac.infra.local.volume import LocalVolume

            resource = LocalVolume("volume", volume_name=volume.name, directory=local_volume_directory(volume.name))
            pulumi.export("directory", resource.directory)
            pulumi.export("volume_id", volume.name)
            pulumi.export("availability_zone", None)
            return
        if volume.backend == "aws":
            from dstack_iac.infra.aws import AwsVolume

            component = AwsVolume("volume", volume_name=volume.name, region=volume.region, availability_zone=volume.zone,
                                  size_gb=volume.size, volume_id=volume.volume_id)
        else:
            from dstack_iac.infra.gcp import GcpVolume

            component = GcpVolume("volume", volume_name=volume.name, zone=volume.zone, size_gb=volume.size,
                                  volume_id=volume.volume_id)
        pulumi.export("volume_id", component.volume_id)
        pulumi.export("availability_zone", component.availability_zone)

    return program
