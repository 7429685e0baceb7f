"""The bundled AWS and GCP instance catalog (a real price snapshot; see data/SOURCE.md).

Rows stay plain tuples until a query picks some: the `offers` command answers in well under a
second only because nothing here builds a model per row.

GCP needs assembling: a2/a3/g2 machine rows carry the host price only, and the GPUs' price is in
separate accelerator rows of the same zone, so an offer is the sum of the two. n1 machines take
attachable GPUs (T4, P4, P100, V100) in the counts and vCPU limits GCP allows.
"""

from __future__ import annotations

import csv
import functools
import os
import pickle
import re
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from dstack_iac.offers.gpus import gpu_model
from dstack_iac.paths import cache_dir

_CACHE_FORMAT = 2  # bump when CatalogRow or the parsing changes

SOURCE_NOTE = ("Prices: offline snapshot of the SkyPilot catalog (github.com/skypilot-org/skypilot-catalog, "
               "Apache-2.0), read 2026-11-22; see dstack_iac/offers/data/SOURCE.md")


class CatalogRow(NamedTuple):
    backend: str
    region: str
    zone: str
    instance_type: str
    cpus: int
    memory_gb: float
    gpu_name: str | None  # the model (A100), not the catalog spelling (A100-80GB)
    gpu_catalog_name: str | None
    gpu_count: int
    gpu_memory_gb: float
    gpu_vendor: str | None
    gpu_compute_capability: str | None
    price: float
    spot_price: float | None


_MIB = re.compile(r"'SizeInMiB':\s*(\d+)")

# Built-in GPUs of GCP accelerator-optimized machine types: accelerator row name and count.
_GCP_BUILT_IN: list[tuple[re.Pattern, str]] = [
    (re.compile(r"a2-(highgpu|megagpu)-(\d+)g"), "A100"),
    (re.compile(r"a2-ultragpu-(\d+)g"), "A100-80GB"),
    (re.compile(r"a3-(highgpu|edgegpu)-(\d+)g"), "H100"),
    (re.compile(r"a3-megagpu-(\d+)g"), "H100-MEGA"),
    (re.compile(r"a3-ultragpu-(\d+)g"), "H200"),
]
_G2_L4_COUNT = {4: 1, 8: 1, 12: 1, 16: 1, 32: 1, 24: 2, 48: 4, 96: 8}

# GPUs attachable to n1 machines: count -> the most vCPUs an n1 machine may have with them.
GCP_N1_GPUS: dict[str, dict[int, int]] = {
    "T4": {1: 48, 2: 48, 4: 96},
    "P4": {1: 24, 2: 48, 4: 96},
    "P100": {1: 16, 2: 32, 4: 96},
    "V100": {1: 12, 2: 24, 4: 48, 8: 96},
}


def _float(text: str) -> float | None:
    return float(text) if text.strip() else None


def _gpu_fields(catalog_name: str | None, count: int, memory_mib: float | None):
    if not catalog_name or count <= 0:
        return (None, None, 0, 0.0, None, None)
    model = gpu_model(catalog_name)
    # The nominal size (24GB for an A10G), as users write it: clouds report the usable memory
    # (22888 MiB) instead, which would make `gpu: 24GB` miss every 24GB card.
    memory = model.memory_gb or (round(memory_mib / 1024) if memory_mib else 0)
    return (model.name, catalog_name, count, float(memory), model.vendor, model.compute_capability)


def catalog_file(backend: str) -> Path:
    """A refreshed table (`offers --refresh`) when there is one, else the bundled snapshot."""
    from dstack_iac.offers.refresh import refreshed_dir

    refreshed = refreshed_dir() / f"{backend}.csv"
    if refreshed.is_file():
        return refreshed
    return Path(str(resources.files("dstack_iac.offers").joinpath("data", f"{backend}.csv")))


def _data_rows(backend: str) -> list[dict[str, str]]:
    return list(csv.DictReader(catalog_file(backend).read_text().splitlines()))


def aws_rows() -> list[CatalogRow]:
    by_zone: dict[tuple[str, str], CatalogRow] = {}
    for row in _data_rows("aws"):
        mib = _MIB.search(row["GpuInfo"])
        count = int(float(row["AcceleratorCount"] or 0))
        parsed = CatalogRow(
            "aws", row["Region"], row["AvailabilityZone"], row["InstanceType"], int(float(row["vCPUs"])),
            float(row["MemoryGiB"]), *_gpu_fields(row["AcceleratorName"] or None, count, mib and float(mib.group(1))),
            float(row["Price"]), _float(row["SpotPrice"]),
        )
        key = (parsed.instance_type, parsed.zone)
        # The snapshot lists a few p4de zones twice; keep the row that knows the spot price.
        if key not in by_zone or (by_zone[key].spot_price is None and parsed.spot_price is not None):
            by_zone[key] = parsed
    return list(by_zone.values())


def _gcp_built_in_gpu(instance_type: str, cpus: int) -> tuple[str, int] | None:
    for pattern, name in _GCP_BUILT_IN:
        match = pattern.fullmatch(instance_type)
        if match:
            return name, int(match.groups()[-1])
    if instance_type.startswith("g2-standard-"):
        return "L4", _G2_L4_COUNT.get(cpus, 1)
    return None


def gcp_rows() -> list[CatalogRow]:
    machines, accelerators = [], {}
    for row in _data_rows("gcp"):
        if row["InstanceType"]:
            machines.append(row)
        else:
            mib = _MIB.search(row["GpuInfo"])
            accelerators[(row["AcceleratorName"], int(float(row["AcceleratorCount"])), row["AvailabilityZone"])] = (
                float(row["Price"]), _float(row["SpotPrice"]), mib and float(mib.group(1)))
    attachable_by_zone: dict[str, list[tuple[str, int]]] = {}
    for name, count, zone in accelerators:
        if name in GCP_N1_GPUS and count in GCP_N1_GPUS[name]:
            attachable_by_zone.setdefault(zone, []).append((name, count))

    rows = []
    for row in machines:
        instance, zone, cpus = row["InstanceType"], row["AvailabilityZone"], int(float(row["vCPUs"]))
        base = ("gcp", row["Region"], zone, instance, cpus, float(row["MemoryGiB"]))
        price, spot = float(row["Price"]), _float(row["SpotPrice"])
        built_in = _gcp_built_in_gpu(instance, cpus)
        if built_in:
            accelerator = accelerators.get((built_in[0], built_in[1], zone))
            if accelerator is None:
                continue  # the GPUs' price in this zone is unknown: no honest offer
            gpu_price, gpu_spot, mib = accelerator
            total_spot = spot + gpu_spot if spot is not None and gpu_spot is not None else None
            rows.append(CatalogRow(*base, *_gpu_fields(built_in[0], built_in[1], mib), price + gpu_price, total_spot))
            continue
        rows.append(CatalogRow(*base, *_gpu_fields(None, 0, None), price, spot))
        if instance.startswith("n1-"):
            for name, count in attachable_by_zone.get(zone, ()):
                if cpus > GCP_N1_GPUS[name][count]:
                    continue
                gpu_price, gpu_spot, mib = accelerators[(name, count, zone)]
                total_spot = spot + gpu_spot if spot is not None and gpu_spot is not None else None
                rows.append(CatalogRow(*base, *_gpu_fields(name, count, mib), price + gpu_price, total_spot))
    return rows


_BUILDERS = {"aws": aws_rows, "gcp": gcp_rows}


@functools.lru_cache(maxsize=None)
def catalog_rows(backend: str) -> tuple[CatalogRow, ...]:
    """The backend's rows, parsed once per catalog file and kept in the user cache (pickled
    plain tuples, keyed by the file's size and mtime), since parsing costs most of a query."""
    try:
        data = catalog_file(backend)
        stat = data.stat()
        origin = "refreshed" if "refreshed" in data.parts else "bundled"
        cached = cache_dir() / "catalog" / f"{backend}-{origin}-{stat.st_size}-{stat.st_mtime_ns}-v{_CACHE_FORMAT}.pickle"
    except OSError:
        return tuple(_BUILDERS[backend]())
    try:
        return tuple(CatalogRow(*row) for row in pickle.loads(cached.read_bytes()))
    except (OSError, pickle.UnpicklingError, EOFError, TypeError, ValueError):
        pass
    rows = tuple(_BUILDERS[backend]())
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(pickle.dumps([tuple(row) for row in rows], protocol=pickle.HIGHEST_PROTOCOL))
        partial.replace(cached)
    except OSError:
        pass  # a read-only cache only costs speed
    return rows
