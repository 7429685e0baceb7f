"""Which volumes a run mounts where, on one candidate backend, resolved against the volume records."""

from __future__ import annotations

from collections.abc import Mapping

from dstack_iac.config.interpolation import resolve_node_rank
from dstack_iac.config.models import InstanceVolumeMount, NetworkVolumeMount, TaskConfiguration
from dstack_iac.errors import BadInput, NoOffer
from dstack_iac.model.backend import Backend, VolumePlace
from dstack_iac.model.plan import ResolvedMount
from dstack_iac.state.volumes import VolumeRecord


class VolumeNotAvailable(BadInput):
    pass


def resolve_mounts(configuration: TaskConfiguration, backend: Backend,
                   volumes: Mapping[str, VolumeRecord]) -> list[ResolvedMount]:
    """Every mount, per rank, on `backend`. Network volumes must exist there."""
    mounts: list[ResolvedMount] = []
    for index, mount in enumerate(configuration.volumes):
        for rank in range(configuration.total_nodes):
            if isinstance(mount, InstanceVolumeMount):
                if backend.instance_path_exists(mount.instance_path) is False:
                    if mount.optional:
                        continue
                    raise VolumeNotAvailable(
                        f"volumes[{index}]: instance path {mount.instance_path} does not exist on the nodes' machine "
                        "(create it, or mark the mount `optional: true`)")
                mounts.append(ResolvedMount(rank=rank, path=mount.path, source=mount.instance_path))
                continue
            mounts.append(_network(index, mount, rank, backend, volumes))
    return mounts


def _network(index: int, mount: NetworkVolumeMount, rank: int, backend: Backend,
             volumes: Mapping[str, VolumeRecord]) -> ResolvedMount:
    names = [resolve_node_rank(name, rank) for name in mount.name]
    for name in names:
        record = volumes.get(name)
        if record is None or record.backend != backend.name:
            continue
        return ResolvedMount(rank=rank, path=mount.path, source=record.mount_source, volume=name,
                             backend=record.backend, region=record.region, availability_zone=record.availability_zone)
    wanted = " or ".join(repr(n) for n in names)
    raise VolumeNotAvailable(f"volumes[{index}]: no volume {wanted} on the {backend.name} backend: create it with "
                             f"`dstack-iac volume create -f VOLUME.dstack.yml` (see `dstack-iac volume list`)")


def volume_place(mounts: list[ResolvedMount]) -> VolumePlace | None:
    """Network disks are zonal: a run's nodes go where its volumes are."""
    places = {(m.region, m.availability_zone) for m in mounts if m.volume}
    if not places:
        return None
    if len(places) > 1:
        listed = ", ".join(f"{r} {z}" for r, z in sorted(places, key=str))
        raise NoOffer(f"the run's volumes are in different places ({listed}): a run's nodes share one zone")
    [(region, zone)] = places
    return VolumePlace(region=region, availability_zone=zone)
