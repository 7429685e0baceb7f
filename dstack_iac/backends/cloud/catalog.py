"""What the AWS and GCP catalog tables share: the column layout of the SkyPilot catalog and how
a row's GPU columns become a model with its nominal memory."""

from __future__ import annotations

import re

from dstack_iac.offers.gpus import gpu_model

MIB_RE = re.compile(r"'SizeInMiB':\s*(\d+)")


def optional_float(text: str) -> float | None:
    return float(text) if text.strip() else None


def gpu_memory_mib(gpu_info: str) -> float | None:
    match = MIB_RE.search(gpu_info)
    return float(match.group(1)) if match else None


def gpu_fields(catalog_name: str | None, count: int, memory_mib: float | None) -> tuple:
    """(name, catalog name, count, memory GB, vendor, compute capability) of a row's GPUs."""
    if not catalog_name or count <= 0:
        return (None, None, 0, 0.0, None, None)
    model = gpu_model(catalog_name)
    # The nominal size (24GB for an A10G), as users write it: clouds report the usable memory
    # (22888 MiB) instead, which would make `gpu: 24GB` miss every 24GB card.
    memory = model.memory_gb or (round(memory_mib / 1024) if memory_mib else 0)
    return (model.name, catalog_name, count, float(memory), model.vendor, model.compute_capability)
