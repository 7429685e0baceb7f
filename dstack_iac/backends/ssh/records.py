"""Fleet records in the state dir (`fleets/<name>/fleet.json`): what `fleet create` measured and
pinned, read by planning, the runs' stacks and `fleet list` without connecting to any host.

A record holds, per host, how to reach it (the identity file by its path only), its pinned host
key (and its jump host's), which is the fleet's known_hosts, and its inventory. Which hosts are in
use comes from the runs' lease markers (see leases.py), read here as `LeaseMarker`.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from dstack_iac.backends.ssh import leases
from dstack_iac.backends.ssh.config import ProxyJump
from dstack_iac.backends.ssh.hosts import Target, known_hosts_line
from dstack_iac.paths import runs_dir, state_dir, write_private


_BRAND_WORDS = {"nvidia", "amd", "tesla", "geforce", "quadro", "instinct", "radeon"}
_VARIANT = re.compile(r"^(\d+GB|HBM\d*e?|PCIe|SXM\d*|NVL|OAM)$", re.IGNORECASE)


class GpuInventory(BaseModel):
    """One GPU of a host, as nvidia-smi, amd-smi or rocm-smi reported it."""

    vendor: str
    index: int
    name: str
    memory_gb: float
    compute_capability: str | None = None

    @property
    def model(self) -> str:
        """The model as tasks name it (A100, H100, RTX4090, MI300X): brand words, memory sizes and
        form factors dropped ("NVIDIA A100-SXM4-80GB" is an A100)."""
        words = [word.split("-")[0] for word in self.name.split()
                 if word.lower() not in _BRAND_WORDS and not _VARIANT.match(word)]
        return "".join(words) or self.name


class Inventory(BaseModel):
    """What a host has, measured over SSH when the fleet was created."""

    hostname: str
    os: str
    kernel: str = ""
    arch: str
    cpus: int
    memory_gb: float
    disk_gb: float
    gpus: list[GpuInventory] = []
    python: str  # python3's version
    pythons: dict[str, str] = {}  # X.Y -> path, for `python: X.Y`
    address: str | None = None
    addresses: list[str] = []
    host_dir: str
    authorized_keys: str
    tools: dict[str, bool] = {}

    def summary(self) -> str:
        text = f"{self.cpus}xCPU, {self.memory_gb:g}GB, {self.disk_gb:g}GB (disk)"
        if self.gpus:
            first = self.gpus[0]
            text += f", {len(self.gpus)}x{first.model} ({first.memory_gb:g}GB)"
        return text


class HostRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str
    hostname: str
    port: int
    user: str
    identity_file: str
    proxy_jump: ProxyJump | None = None
    internal_ip: str | None = None
    private_address: str
    blocks: int  # leases the host is split into (1: the whole host)
    host_key: str
    fingerprint: str
    jump_host_key: str | None = None
    inventory: Inventory

    def target(self) -> Target:
        jump = None
        if self.proxy_jump is not None:
            jump = Target(label=self.proxy_jump.hostname, hostname=self.proxy_jump.hostname, port=self.proxy_jump.port,
                          user=self.proxy_jump.user, identity_file=self.proxy_jump.identity_file,
                          host_key=self.jump_host_key)
        return Target(label=self.label, hostname=self.hostname, port=self.port, user=self.user,
                      identity_file=self.identity_file, host_key=self.host_key, jump=jump)

    def lock_names(self, blocks: list[int]) -> list[str]:
        return [f"block-{b}" for b in blocks] if self.blocks > 1 else ["host"]

    def gpu_indices(self, blocks: list[int]) -> list[int]:
        """The GPUs of `blocks` (all of them for the whole host)."""
        gpus = sorted(self.inventory.gpus, key=lambda gpu: gpu.index)
        if self.blocks == 1 or not gpus:
            return [gpu.index for gpu in gpus]
        per_block = len(gpus) // self.blocks
        return [gpus[b * per_block + i].index for b in blocks for i in range(per_block)]


class FleetRecord(BaseModel):
    name: str
    configuration: str  # the file it was created from
    placement: str
    env: dict[str, str] = {}
    hosts: list[HostRecord]
    created_at: float

    def host(self, label: str) -> HostRecord | None:
        return next((host for host in self.hosts if host.label == label), None)

    def known_hosts(self) -> str:
        """The fleet's pinned host keys in OpenSSH's known_hosts format."""
        lines = []
        for host in self.hosts:
            target = host.target()
            lines.append(known_hosts_line(target))
            if target.jump is not None and target.jump.host_key:
                lines.append(known_hosts_line(target.jump))
        return "\n".join(dict.fromkeys(lines)) + "\n"


class LeaseMarker(BaseModel):
    """A run's lease on a host, as the lease's handler recorded it (leases.py writes it)."""

    run: str
    rank: int
    fleet: str
    label: str
    target: dict
    locks: list[str] = []
    blocks: list[int] = []
    gpu_indices: list[int] = []
    gpu_vendor: str | None = None
    directory: str | None = None  # the run's directory on the host, once acquired
    host_dir: str | None = None


def fleets_dir() -> Path:
    return state_dir() / "fleets"


def _path(name: str) -> Path:
    return fleets_dir() / name / "fleet.json"


def save(record: FleetRecord) -> None:
    write_private(_path(record.name), record.model_dump_json(indent=2))
    write_private(fleets_dir() / record.name / "known_hosts", record.known_hosts())


def load(name: str) -> FleetRecord | None:
    try:
        return FleetRecord.model_validate_json(_path(name).read_text())
    except (OSError, ValueError):
        return None


def all_fleets() -> list[FleetRecord]:
    if not fleets_dir().is_dir():
        return []
    found = [load(entry.name) for entry in sorted(fleets_dir().iterdir()) if entry.is_dir()]
    return [record for record in found if record is not None]


def any_fleet() -> bool:
    """Cheap (no parsing): whether any fleet was created in this state dir."""
    return fleets_dir().is_dir() and any(fleets_dir().glob("*/fleet.json"))


def forget(name: str) -> None:
    shutil.rmtree(fleets_dir() / name, ignore_errors=True)


def lease_markers() -> list[LeaseMarker]:
    """Every lease this state dir's runs hold (or may hold) on any fleet's host."""
    found = []
    for directory in sorted(runs_dir().iterdir()) if runs_dir().is_dir() else []:
        for _path_, data in leases.markers(directory):
            try:
                found.append(LeaseMarker.model_validate(data))
            except ValueError:
                continue
    return found


def users(fleet: str) -> dict[str, list[LeaseMarker]]:
    """The leases on each host of `fleet`, by host label."""
    by_host: dict[str, list[LeaseMarker]] = {}
    for marker in lease_markers():
        if marker.fleet == fleet:
            by_host.setdefault(marker.label, []).append(marker)
    return by_host


def now() -> float:
    return time.time()
