"""What the catalog does not say about each GPU model: vendor, memory, compute capability.

Catalog names are normalised to one model name plus memory, so `A100` matches both the 40GB and
the 80GB part and `A100:80GB` only the latter; the catalog's own spelling (`A100-80GB`) matches too.
Sources: NVIDIA's CUDA GPUs page (compute capability) and data sheets (memory per GPU).
"""

from __future__ import annotations

from typing import NamedTuple


class GpuModel(NamedTuple):
    name: str  # the model, as users write it in `gpu:`
    vendor: str
    memory_gb: float
    compute_capability: str


# Catalog spelling -> model. Memory here is the fallback when a row carries none.
GPU_MODELS: dict[str, GpuModel] = {
    "P4": GpuModel("P4", "nvidia", 8, "6.1"),
    "P100": GpuModel("P100", "nvidia", 16, "6.0"),
    "V100": GpuModel("V100", "nvidia", 16, "7.0"),
    "T4": GpuModel("T4", "nvidia", 16, "7.5"),
    "A10G": GpuModel("A10G", "nvidia", 24, "8.6"),
    "L4": GpuModel("L4", "nvidia", 24, "8.9"),
    "L40S": GpuModel("L40S", "nvidia", 48, "8.9"),
    "A100": GpuModel("A100", "nvidia", 40, "8.0"),
    "A100-80GB": GpuModel("A100", "nvidia", 80, "8.0"),
    "H100": GpuModel("H100", "nvidia", 80, "9.0"),
    "H100-MEGA": GpuModel("H100", "nvidia", 80, "9.0"),
    "H200": GpuModel("H200", "nvidia", 141, "9.0"),
    "B200": GpuModel("B200", "nvidia", 180, "10.0"),
}


def gpu_model(catalog_name: str) -> GpuModel:
    return GPU_MODELS.get(catalog_name) or GpuModel(catalog_name, "nvidia", 0, "")
