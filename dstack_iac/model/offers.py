"""The offer contract between planning and infrastructure: one node's worth of machine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict


class GpuInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    vendor: str
    name: str
    memory_gb: float
    count: int
    compute_capability: str | None = None
    catalog_name: str | None = None  # the catalog's spelling, e.g. A100-80GB, when it differs


class Offer(BaseModel):
    """One node's worth of machine: an instance type in a region/zone at a price."""

    model_config = ConfigDict(frozen=True)

    backend: str
    region: str
    availability_zone: str | None = None
    instance_type: str
    cpus: int
    cpu_arch: str = "x86"
    memory_gb: float
    disk_gb: float
    gpu: GpuInfo | None = None
    spot: bool = False
    price: float  # $/hour per node

    def resources_summary(self) -> str:
        text = f"{self.cpus}xCPU, {self.memory_gb:g}GB, {self.disk_gb:g}GB (disk)"
        if self.gpu:
            text += f", {self.gpu.count}x{self.gpu.name} ({self.gpu.memory_gb:g}GB)"
        return text


class CatalogRow(NamedTuple):
    """One priced machine of a cloud catalog, as plain values (a query reads thousands)."""

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


@dataclass(frozen=True)
class Catalog:
    """A backend's priced offers: the bundled table `data/<name>.csv`, how its records become rows,
    and where `offers --refresh` downloads a current table (and which of its rows to keep)."""

    name: str
    build: Callable[[list[dict[str, str]]], list[CatalogRow]]
    source_url: str
    keep: Callable[[dict[str, str]], bool]
    format_version: int = 1  # bump when `build` changes, so cached rows are rebuilt
