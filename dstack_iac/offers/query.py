"""From a task's requirements to offers sorted by price (pure, over catalog rows).

`find_offers` applies one constraint at a time so that, when nothing is left, the error says which
constraint excluded what (and what would have matched without it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pydantic import BaseModel, ConfigDict

from dstack_iac.config.grammar import format_memory
from dstack_iac.config.models import ResourcesSpec, SpotPolicy, TaskConfiguration
from dstack_iac.errors import NoOffer
from dstack_iac.model.offers import CatalogRow, GpuInfo, Offer


class OfferQuery(BaseModel):
    """Everything that decides which offers fit, normalised from a task."""

    model_config = ConfigDict(frozen=True)

    resources: ResourcesSpec = ResourcesSpec()
    backends: tuple[str, ...]
    regions: tuple[str, ...] | None = None
    availability_zones: tuple[str, ...] | None = None
    instance_types: tuple[str, ...] | None = None
    spot_policy: SpotPolicy = SpotPolicy.ON_DEMAND
    max_price: float | None = None
    nodes: int = 1

    @classmethod
    def from_configuration(cls, configuration: TaskConfiguration, backends: Iterable[str], **update) -> "OfferQuery":
        def optional(values):
            return tuple(values) if values else None

        return cls(
            resources=configuration.resources, backends=tuple(backends), regions=optional(configuration.regions),
            availability_zones=optional(configuration.availability_zones),
            instance_types=optional(configuration.instance_types),
            spot_policy=configuration.spot_policy or SpotPolicy.ON_DEMAND, max_price=configuration.max_price,
            nodes=configuration.nodes, **update,
        )


class _Candidate(tuple):
    """(row, spot): one catalog row priced on-demand or spot."""

    @property
    def row(self) -> CatalogRow:
        return self[0]

    @property
    def spot(self) -> bool:
        return self[1]

    @property
    def price(self) -> float:
        return self[0].spot_price if self[1] else self[0].price


def _lower(values: Iterable[str]) -> set[str]:
    return {value.lower() for value in values}


def _constraints(query: OfferQuery) -> list[tuple[str, Callable[[_Candidate], bool]]]:
    """(label, keep) pairs in the order they are applied. Labels name the user's field and value."""
    r = query.resources
    checks: list[tuple[str, Callable[[_Candidate], bool]]] = []
    if query.instance_types:
        wanted = _lower(query.instance_types)
        checks.append((f"instance_types {list(query.instance_types)}", lambda c: c.row.instance_type.lower() in wanted))
    if query.regions:
        regions = _lower(query.regions)
        checks.append((f"regions {list(query.regions)}", lambda c: c.row.region.lower() in regions))
    if query.availability_zones:
        zones = _lower(query.availability_zones)
        checks.append((f"availability_zones {list(query.availability_zones)}", lambda c: c.row.zone.lower() in zones))
    if r.cpu.arch == "arm":
        checks.append(("cpu arm", lambda c: False))  # the bundled catalog has x86 families only
    checks.append((f"cpu {r.cpu.count}", lambda c: r.cpu.count.contains(c.row.cpus)))
    checks.append((f"memory {r.memory}", lambda c: r.memory.contains(c.row.memory_gb)))
    gpu = r.gpu
    if gpu is None or (gpu.count.max == 0):
        if gpu is not None:
            checks.append(("gpu 0", lambda c: c.row.gpu_count == 0))
    else:
        needs_gpu = (gpu.count.min or 0) > 0
        label = f"gpu {gpu}"
        if gpu.vendor:
            checks.append((f"gpu vendor {gpu.vendor}", lambda c: c.row.gpu_vendor == gpu.vendor or
                           (not needs_gpu and c.row.gpu_count == 0)))
        if gpu.names:
            names = _lower(gpu.names)
            checks.append((f"gpu {','.join(gpu.names)}", lambda c: (c.row.gpu_name or "").lower() in names
                           or (c.row.gpu_catalog_name or "").lower() in names))
        checks.append((f"{label} (count)", lambda c: gpu.count.contains(c.row.gpu_count)))
        if gpu.memory:
            checks.append((f"gpu memory {gpu.memory} per GPU", lambda c: c.row.gpu_count == 0 and not needs_gpu
                           or gpu.memory.contains(c.row.gpu_memory_gb)))
        if gpu.total_memory:
            checks.append((f"gpu total memory {gpu.total_memory}",
                           lambda c: gpu.total_memory.contains(c.row.gpu_count * c.row.gpu_memory_gb)))
        if gpu.compute_capability:
            minimum = _version(gpu.compute_capability)
            checks.append((f"gpu compute capability >= {gpu.compute_capability}",
                           lambda c: c.row.gpu_count == 0 and not needs_gpu
                           or _version(c.row.gpu_compute_capability or "0") >= minimum))
    if query.spot_policy == SpotPolicy.SPOT:
        checks.append(("spot_policy spot", lambda c: c.spot))
    elif query.spot_policy == SpotPolicy.ON_DEMAND:
        checks.append(("spot_policy on-demand", lambda c: not c.spot))
    if query.max_price is not None:
        checks.append((f"max_price ${query.max_price:g}/h", lambda c: c.price <= query.max_price))
    return checks


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def _candidates(rows: Iterable[CatalogRow], backends: tuple[str, ...]) -> list[_Candidate]:
    found = []
    for row in rows:
        if row.backend not in backends:
            continue
        found.append(_Candidate((row, False)))
        if row.spot_price is not None:
            found.append(_Candidate((row, True)))
    return found


def _offer(candidate: _Candidate, disk_gb: float) -> Offer:
    row = candidate.row
    gpu = None
    if row.gpu_count:
        gpu = GpuInfo(vendor=row.gpu_vendor or "nvidia", name=row.gpu_name or "", memory_gb=row.gpu_memory_gb,
                      count=row.gpu_count, compute_capability=row.gpu_compute_capability,
                      catalog_name=row.gpu_catalog_name)
    return Offer(backend=row.backend, region=row.region, availability_zone=row.zone, instance_type=row.instance_type,
                 cpus=row.cpus, memory_gb=row.memory_gb, disk_gb=disk_gb, gpu=gpu, spot=candidate.spot,
                 price=round(candidate.price, 5))


def find_offers(query: OfferQuery, rows: Iterable[CatalogRow], limit: int | None = None) -> list[Offer]:
    """Offers among `rows` matching `query`, cheapest first, one per backend/region/instance
    type/spot (its cheapest zone). Raises NoOffer naming the constraint that excluded the rest."""
    remaining = _candidates(rows, query.backends)
    steps: list[tuple[str, int]] = [(f"backends {list(query.backends)}", len(remaining))]
    for label, keep in _constraints(query):
        kept = [c for c in remaining if keep(c)]
        if not kept:
            raise NoOffer(_explain(steps, label, remaining))
        steps.append((label, len(kept)))
        remaining = kept
    cheapest: dict[tuple, _Candidate] = {}
    for candidate in remaining:
        key = (candidate.row.backend, candidate.row.region, candidate.row.instance_type, candidate.spot)
        if key not in cheapest or candidate.price < cheapest[key].price:
            cheapest[key] = candidate
    ordered = sorted(cheapest.values(), key=lambda c: (c.price, c.row.backend, c.row.region, c.row.instance_type))
    disk = query.resources.disk.size.min or 100.0
    return [_offer(c, disk) for c in (ordered[:limit] if limit else ordered)]


def _explain(steps: list[tuple[str, int]], excluding: str, survivors: list[_Candidate]) -> str:
    lines = [f"no offer matches: {excluding} excluded all of the {len(survivors)} offers left by"]
    lines += [f"  {label}: {count} offers" for label, count in steps]
    examples, seen = [], set()
    for candidate in sorted(survivors, key=lambda c: c.price):
        key = (candidate.row.backend, candidate.row.region, candidate.row.instance_type, candidate.spot)
        if key not in seen and len(examples) < 3:
            seen.add(key)
            examples.append(candidate)
    if examples:
        lines.append("  cheapest of those: " + "; ".join(
            f"{c.row.backend} {c.row.region} {c.row.instance_type} {_gpu_text(c.row)}"
            f"{' spot' if c.spot else ''} ${c.price:.4g}/h" for c in examples))
    lines.append(f"relax {excluding.split(' ')[0]}, or see what exists with `dstack-iac offers`")
    return "\n".join(lines)


def _gpu_text(row: CatalogRow) -> str:
    if not row.gpu_count:
        return f"({row.cpus}xCPU, {format_memory(row.memory_gb)})"
    return f"({row.gpu_count}x{row.gpu_name} {row.gpu_memory_gb:g}GB)"
