"""Which volumes a run mounts where, resolved against the volume records (planning)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from dstack_iac.config.interpolation import resolve_node_rank
from dstack_iac.config.models import InstanceVolumeMount, NetworkVolumeMount, TaskConfiguration
from dstack_iac.volumes import registry


class VolumeNotAvailable(Exception):
    exit_code = 2


class ResolvedMount(BaseModel):
    """`source` (a local directory, or the volume's name on clouds) appears at `path` on `rank`."""

    model_config = ConfigDict(frozen=True)

    rank: int
    path: str
    source: str
    volume: str | None = None  # the network volume's name; None for an instance path
    backend: str | None = None
    region: str | None = None
    availability_zone: str | None = None


def resolve_mounts(configuration: TaskConfiguration, backend: str | None, nodes: int) -> list[ResolvedMount]:
    """Every mount, per rank. Network volumes must exist (for the backend); with `backend=None`
    (clouds, before an offer is chosen) any cloud volume qualifies."""
    mounts: list[ResolvedMount] = []
    for index, mount in enumerate(configuration.volumes):
        for rank in range(nodes):
            if isinstance(mount, InstanceVolumeMount):
                if not Path(mount.instance_path).is_dir() and backend == "local":
                    if mount.optional:
                        continue
                    raise VolumeNotAvailable(
                        f"volumes[{index}]: instance path {mount.instance_path} does not exist on this machine "
                        "(create it, or mark the mount `optional: true`)")
                mounts.append(ResolvedMount(rank=rank, path=mount.path, source=mount.instance_path))
                continue
            mounts.append(_network(index, mount, rank, backend))
    return mounts


def _network(index: int, mount: NetworkVolumeMount, rank: int, backend: str | None) -> ResolvedMount:
    names = [resolve_node_rank(name, rank) for name in mount.name]
    for name in names:
        record = registry.load(name)
        if record is None or (backend is not None and record.backend != backend) or \
                (backend is None and record.backend == "local"):
            continue
        # Local: the data directory. Clouds: the disk's id (created or registered) when known.
        source = record.directory if record.backend == "local" else (record.volume_id or name)
        return ResolvedMount(rank=rank, path=mount.path, source=source or name, volume=name, backend=record.backend,
                             region=record.region,
                             availability_zone=record.availability_zone)
    wanted = " or ".join(repr(n) for n in names)
    where = f"the {backend} backend" if backend else "a cloud backend"
    raise VolumeNotAvailable(f"volumes[{index}]: no volume {wanted} on {where}: create it with "
                             f"`dstack-iac volume create -f VOLUME.dstack.yml` (see `dstack-iac volume list`)")
