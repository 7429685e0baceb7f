"""Which hosts (and blocks of hosts) of a fleet a task's nodes get: the ssh backend's offers.

A node needs one host of its own (nodes of a run never share a host: they would share its
address and ports), and on a host split into blocks, the fewest free blocks that meet the task's
resources (a block has an even share of the host's GPUs, CPUs and memory; the disk is shared).
Free means no lease of this state dir's runs holds it; another machine's run is found when the
lease is taken (its lock on the host). Hosts are measured, so the request is checked against
what each host has; the price is $0.

The chosen hosts travel in the offer: `region` is the fleet, `instance_type` the hosts in rank
order, e.g. `box-1,box-2` or, with blocks, `box-1[0,1],box-2[3]`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from dstack_iac.backends.ssh.records import FleetRecord, HostRecord, LeaseMarker
from dstack_iac.config.models import ResourcesSpec, TaskConfiguration
from dstack_iac.model.offers import GpuInfo, Offer

_NODE_RE = re.compile(r"([^,\[\]]+)(?:\[([0-9,]+)\])?,?")


@dataclass(frozen=True)
class Placement:
    """Node `rank` gets `blocks` of `host` (all of it when the host is not split)."""

    host: HostRecord
    blocks: tuple[int, ...]

    @property
    def share(self) -> float:
        return len(self.blocks) / self.host.blocks

    @property
    def cpus(self) -> int:
        return max(1, self.host.inventory.cpus * len(self.blocks) // self.host.blocks)

    @property
    def memory_gb(self) -> float:
        return round(self.host.inventory.memory_gb * self.share, 1)

    @property
    def gpu_indices(self) -> list[int]:
        return self.host.gpu_indices(list(self.blocks))

    @property
    def shown(self) -> str:
        if self.host.blocks == 1:
            return self.host.label
        return f"{self.host.label}[{','.join(str(b) for b in self.blocks)}]"


def encode(placements: Sequence[Placement]) -> str:
    return ",".join(p.shown for p in placements)


def decode(text: str) -> list[tuple[str, list[int]]]:
    """(host label, blocks) per rank, from an offer's instance_type."""
    return [(match.group(1), [int(b) for b in match.group(2).split(",")] if match.group(2) else [])
            for match in _NODE_RE.finditer(text) if match.group(1)]


def _problems(resources: ResourcesSpec, host: HostRecord, blocks: int, python: str | None) -> list[str]:
    """What `blocks` blocks of `host` lack for one node of the task."""
    inventory = host.inventory
    share = blocks / host.blocks
    cpus = max(1, inventory.cpus * blocks // host.blocks)
    memory = inventory.memory_gb * share
    gpus = inventory.gpus[:len(inventory.gpus) * blocks // host.blocks] if host.blocks > 1 else inventory.gpus
    part = "" if host.blocks == 1 else f" ({blocks} of {host.blocks} blocks)"
    problems = []
    if not resources.cpu.count.contains(cpus):
        problems.append(f"cpu: asks for {resources.cpu.count}, it has {cpus}{part}")
    if resources.cpu.arch and resources.cpu.arch != inventory.arch:
        problems.append(f"cpu: asks for {resources.cpu.arch}, it is {inventory.arch}")
    if not resources.memory.contains(memory):
        problems.append(f"memory: asks for {resources.memory}, it has {memory:.1f}GB{part}")
    if not resources.disk.size.contains(inventory.disk_gb):
        problems.append(f"disk: asks for {resources.disk.size}, its disk is {inventory.disk_gb:g}GB")
    wanted = resources.gpu
    if wanted is not None:
        if not gpus and (wanted.count.min or 0) > 0:
            problems.append(f"gpu: asks for {wanted}, it has no GPU")
        elif gpus:
            first = gpus[0]
            if not wanted.count.contains(len(gpus)):
                problems.append(f"gpu: asks for {wanted.count} GPUs, it has {len(gpus)}{part}")
            if wanted.vendor and wanted.vendor != first.vendor:
                problems.append(f"gpu: asks for {wanted.vendor}, its GPUs are {first.vendor}")
            if wanted.names and first.model.lower() not in {n.lower() for n in wanted.names}:
                problems.append(f"gpu: asks for {','.join(wanted.names)}, it has {first.model}")
            if wanted.memory and not wanted.memory.contains(first.memory_gb):
                problems.append(f"gpu: asks for {wanted.memory} per GPU, its GPUs have {first.memory_gb:g}GB")
            if wanted.total_memory and not wanted.total_memory.contains(first.memory_gb * len(gpus)):
                problems.append(f"gpu: asks for {wanted.total_memory} in all, it has {first.memory_gb * len(gpus):g}GB")
            if wanted.compute_capability and _capability(first.compute_capability) < _capability(wanted.compute_capability):
                problems.append(f"gpu: asks for compute capability {wanted.compute_capability}, it has "
                                f"{first.compute_capability or 'unknown'}")
    if python is not None and python not in inventory.pythons and python != inventory.python:
        problems.append(f"python: asks for {python}, it has {', '.join(sorted(inventory.pythons)) or inventory.python}")
    return problems


def _capability(text: str | None) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in (text or "0").split("."))
    except ValueError:
        return (0,)


@dataclass
class HostFit:
    """How a host can take one node: its fewest fitting blocks, which are free, and why not."""

    host: HostRecord
    blocks: int | None  # how many blocks a node needs; None: the host cannot take the task at all
    free: list[int]
    problems: list[str]
    holders: list[str]


def fit_host(configuration: TaskConfiguration, host: HostRecord, leases: Sequence[LeaseMarker]) -> HostFit:
    used = {b for lease in leases for b in (lease.blocks or range(host.blocks))}
    free = [b for b in range(host.blocks) if b not in used]
    holders = sorted({lease.run for lease in leases})
    problems: list[str] = []
    for count in range(1, host.blocks + 1):
        problems = _problems(configuration.resources, host, count, configuration.python)
        if not problems:
            return HostFit(host, count, free, [], holders)
    return HostFit(host, None, free, problems, holders)


def named(configuration: TaskConfiguration, fleet: FleetRecord, index: int) -> bool:
    """Whether the task's `instances` (when it has them) name host `index` of `fleet`: by name
    (the host's label, or `<fleet>-<index>` as dstack names a fleet's instances), by hostname,
    or by fleet and index."""
    references = getattr(configuration, "instances", None)
    if not references:
        return True
    host = fleet.hosts[index]
    for reference in references:
        name, hostname = getattr(reference, "name", None), getattr(reference, "hostname", None)
        if name is not None and name in (host.label, f"{fleet.name}-{index}"):
            return True
        if hostname is not None and hostname in (host.hostname, host.label):
            return True
        if getattr(reference, "fleet", None) == fleet.name and getattr(reference, "instance", None) == index:
            return True
    return False


def place(configuration: TaskConfiguration, fleet: FleetRecord, by_host: dict[str, list[LeaseMarker]],
          wait: bool) -> tuple[list[Placement] | None, list[str]]:
    """The task's nodes on `fleet`, or None and why not. With `wait` (the task retries on
    no-capacity), busy hosts are taken too, and the run waits for them when leasing."""
    nodes = configuration.nodes
    if nodes > 1 and fleet.placement != "cluster":
        return None, [f"fleet {fleet.name} has placement: any, and a multi-node task needs placement: cluster "
                      "(hosts that reach each other)"]
    fits = [fit_host(configuration, host, by_host.get(host.label, []))
            for index, host in enumerate(fleet.hosts) if named(configuration, fleet, index)]
    if not fits:
        return None, [f"fleet {fleet.name}: none of its hosts is one of the task's instances"]
    able = [fit for fit in fits if fit.blocks is not None]
    # A task without GPUs leaves GPU hosts to those that need them.
    if configuration.resources.gpu is None:
        able.sort(key=lambda fit: bool(fit.host.inventory.gpus))
    free = [fit for fit in able if len(fit.free) >= fit.blocks]
    reasons = [f"{fit.host.label}: {'; '.join(fit.problems)}" for fit in fits if fit.blocks is None]
    if len(able) < nodes:
        need = f"{nodes} hosts" if nodes > 1 else "a host"
        return None, [f"fleet {fleet.name} has no {need} with what the task asks for" if not able else
                      f"fleet {fleet.name}: only {len(able)} of its hosts can take the task, it needs {nodes}",
                      *reasons]
    if len(free) >= nodes:
        chosen = [Placement(fit.host, tuple(fit.free[:fit.blocks])) for fit in free[:nodes]]
        return chosen, []
    if wait:
        busy = [fit for fit in able if fit not in free]
        chosen = [Placement(fit.host, tuple((fit.free + [b for b in range(fit.host.blocks) if b not in fit.free])
                                            [:fit.blocks])) for fit in (free + busy)[:nodes]]
        return chosen, []
    holders = sorted({run for fit in able if fit not in free for run in fit.holders})
    return None, [f"fleet {fleet.name}: {len(free)} of the {len(able)} hosts that can take the task "
                  f"{'is' if len(free) == 1 else 'are'} free, it needs {nodes} (in use by "
                  f"{', '.join(holders)}); wait for {'them' if len(holders) > 1 else 'it'} to finish, or add "
                  "`retry: {on_events: [no-capacity]}` to wait for a free host"]


def offer(backend: str, fleet: FleetRecord, placements: Sequence[Placement]) -> Offer:
    """One node's worth of the chosen hosts (the smallest of them), at $0."""
    smallest = min(placements, key=lambda p: (p.cpus, p.memory_gb))
    gpus = [(p, p.gpu_indices) for p in placements if p.host.inventory.gpus]
    gpu = None
    if gpus and len(gpus) == len(placements):
        first = gpus[0][0].host.inventory.gpus[0]
        gpu = GpuInfo(vendor=first.vendor, name=first.model, memory_gb=first.memory_gb,
                      count=min(len(indices) for _p, indices in gpus), compute_capability=first.compute_capability)
    return Offer(backend=backend, region=fleet.name, instance_type=encode(placements), cpus=smallest.cpus,
                 cpu_arch=smallest.host.inventory.arch, memory_gb=smallest.memory_gb,
                 disk_gb=min(p.host.inventory.disk_gb for p in placements), gpu=gpu, spot=False, price=0.0)
