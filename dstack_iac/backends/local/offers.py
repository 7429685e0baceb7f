"""The local backend's single offer: this machine, checked against what the task asks for."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

from dstack_iac.config.grammar import format_memory
from dstack_iac.config.models import ResourcesSpec
from dstack_iac.errors import NoOffer
from dstack_iac.model.offers import GpuInfo, Offer
from dstack_iac.paths import state_dir


def host_memory_gb() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def host_disk_gb() -> float:
    """The size of the disk the state dir (where nodes live) is on."""
    probe = state_dir()
    while not probe.is_dir():
        probe = probe.parent
    return shutil.disk_usage(probe).total / 1024**3


def host_gpus() -> GpuInfo | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [[part.strip() for part in line.split(",")] for line in out.strip().splitlines() if line.strip()]
    if not rows:
        return None
    name, memory_mib, capability = rows[0][0], float(rows[0][1]), rows[0][2] if len(rows[0]) > 2 else None
    short = name.replace("NVIDIA ", "").split()[0]
    return GpuInfo(vendor="nvidia", name=short, memory_gb=round(memory_mib / 1024), count=len(rows),
                   compute_capability=capability)


def local_offer(resources: ResourcesSpec) -> Offer:
    """This machine as an offer, or NoOffer naming every request it cannot meet."""
    cpus = os.cpu_count() or 1
    memory = host_memory_gb()
    disk = host_disk_gb()
    gpu = host_gpus()
    arch = "arm" if platform.machine().lower() in ("arm64", "aarch64") else "x86"
    problems = []
    count = resources.cpu.count
    if count.min is not None and cpus < count.min:
        problems.append(f"cpu: asks for {count} CPUs, this machine has {cpus}")
    if resources.cpu.arch and resources.cpu.arch != arch:
        problems.append(f"cpu: asks for {resources.cpu.arch}, this machine is {arch}")
    if resources.memory.min is not None and memory < resources.memory.min:
        problems.append(f"memory: asks for {resources.memory}, this machine has {_shown(memory)}")
    if resources.disk.size.min is not None and disk < resources.disk.size.min:
        problems.append(f"disk: asks for {resources.disk.size}, this machine's disk is {_shown(disk)}")
    wanted = resources.gpu
    if wanted is not None and (wanted.count.min or 0) > 0:
        if gpu is None:
            problems.append(f"gpu: asks for {wanted}, this machine has no GPU (nvidia-smi found none)")
        else:
            if gpu.count < (wanted.count.min or 0):
                problems.append(f"gpu: asks for {wanted.count} GPUs, this machine has {gpu.count}")
            if wanted.names and gpu.name.lower() not in {n.lower() for n in wanted.names}:
                problems.append(f"gpu: asks for {','.join(wanted.names)}, this machine has {gpu.name}")
            if wanted.memory and not wanted.memory.contains(gpu.memory_gb):
                problems.append(f"gpu: asks for {wanted.memory} per GPU, this machine's have {gpu.memory_gb:g}GB")
    if problems:
        raise NoOffer("the local backend cannot run this task:\n  " + "\n  ".join(problems))
    used_gpu = None
    if wanted is not None and gpu is not None:
        upper = wanted.count.max if wanted.count.max is not None else gpu.count
        used_gpu = gpu.model_copy(update={"count": min(gpu.count, upper)})
    return Offer(backend="local", region="local", instance_type=platform.node() or "localhost", cpus=cpus,
                 cpu_arch=arch, memory_gb=round(memory, 1), disk_gb=round(disk, 1), gpu=used_gpu, spot=False,
                 price=0.0)


def _shown(gb: float) -> str:
    return format_memory(round(gb)) if gb >= 1 else format_memory(round(gb * 1024) / 1024)
