"""The GCP table of the bundled catalog as rows.

It needs assembling: a2/a3/g2 machine rows carry the host price only, and the GPUs' price is in
separate accelerator rows of the same zone, so an offer is the sum of the two. n1 machines take
attachable GPUs (T4, P4, P100, V100) in the counts and vCPU limits GCP allows.
"""

from __future__ import annotations

import re

from dstack_iac.backends.cloud.catalog import gpu_fields, gpu_memory_mib, optional_float
from dstack_iac.model.offers import Catalog, CatalogRow

SOURCE_URL = "https://raw.githubusercontent.com/skypilot-org/skypilot-catalog/master/catalogs/v7/gcp/vms.csv"
FAMILIES = ("a2-", "a3-", "g2-", "e2-standard-", "n1-standard-", "n2-standard-")

# Built-in GPUs of GCP accelerator-optimized machine types: accelerator row name and count.
_BUILT_IN: list[tuple[re.Pattern, str]] = [
    (re.compile(r"a2-(highgpu|megagpu)-(\d+)g"), "A100"),
    (re.compile(r"a2-ultragpu-(\d+)g"), "A100-80GB"),
    (re.compile(r"a3-(highgpu|edgegpu)-(\d+)g"), "H100"),
    (re.compile(r"a3-megagpu-(\d+)g"), "H100-MEGA"),
    (re.compile(r"a3-ultragpu-(\d+)g"), "H200"),
]
_G2_L4_COUNT = {4: 1, 8: 1, 12: 1, 16: 1, 32: 1, 24: 2, 48: 4, 96: 8}

# GPUs attachable to n1 machines: count -> the most vCPUs an n1 machine may have with them.
N1_GPUS: dict[str, dict[int, int]] = {
    "T4": {1: 48, 2: 48, 4: 96},
    "P4": {1: 24, 2: 48, 4: 96},
    "P100": {1: 16, 2: 32, 4: 96},
    "V100": {1: 12, 2: 24, 4: 48, 8: 96},
}


def _built_in_gpu(instance_type: str, cpus: int) -> tuple[str, int] | None:
    for pattern, name in _BUILT_IN:
        match = pattern.fullmatch(instance_type)
        if match:
            return name, int(match.groups()[-1])
    if instance_type.startswith("g2-standard-"):
        return "L4", _G2_L4_COUNT.get(cpus, 1)
    return None


def _sum(price: float | None, extra: float | None) -> float | None:
    return price + extra if price is not None and extra is not None else None


def build_rows(records: list[dict[str, str]]) -> list[CatalogRow]:
    machines, accelerators = [], {}
    for row in records:
        if row["InstanceType"]:
            machines.append(row)
        else:
            accelerators[(row["AcceleratorName"], int(float(row["AcceleratorCount"])), row["AvailabilityZone"])] = (
                float(row["Price"]), optional_float(row["SpotPrice"]), gpu_memory_mib(row["GpuInfo"]))
    attachable_by_zone: dict[str, list[tuple[str, int]]] = {}
    for name, count, zone in accelerators:
        if name in N1_GPUS and count in N1_GPUS[name]:
            attachable_by_zone.setdefault(zone, []).append((name, count))

    rows = []
    for row in machines:
        instance, zone, cpus = row["InstanceType"], row["AvailabilityZone"], int(float(row["vCPUs"]))
        base = ("gcp", row["Region"], zone, instance, cpus, float(row["MemoryGiB"]))
        price, spot = float(row["Price"]), optional_float(row["SpotPrice"])
        built_in = _built_in_gpu(instance, cpus)
        if built_in:
            accelerator = accelerators.get((built_in[0], built_in[1], zone))
            if accelerator is None:
                continue  # the GPUs' price in this zone is unknown: no honest offer
            gpu_price, gpu_spot, mib = accelerator
            rows.append(CatalogRow(*base, *gpu_fields(built_in[0], built_in[1], mib), price + gpu_price,
                                   _sum(spot, gpu_spot)))
            continue
        rows.append(CatalogRow(*base, *gpu_fields(None, 0, None), price, spot))
        if instance.startswith("n1-"):
            for name, count in attachable_by_zone.get(zone, ()):
                if cpus > N1_GPUS[name][count]:
                    continue
                gpu_price, gpu_spot, mib = accelerators[(name, count, zone)]
                rows.append(CatalogRow(*base, *gpu_fields(name, count, mib), price + gpu_price, _sum(spot, gpu_spot)))
    return rows


def keep(row: dict[str, str]) -> bool:
    instance = row.get("InstanceType") or ""
    if instance:
        return instance.startswith(FAMILIES)
    name = row.get("AcceleratorName") or ""
    return bool(name) and not name.lower().startswith("tpu")  # GPU price rows, not TPUs


CATALOG = Catalog(name="gcp", build=build_rows, source_url=SOURCE_URL, keep=keep, format_version=3)
