"""The offer contract between planning and infrastructure."""

from __future__ import annotations

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


class NoOfferError(Exception):
    """No offer matches; the message says which constraint excluded what."""

    exit_code = 3
