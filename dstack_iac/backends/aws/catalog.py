"""The AWS table of the bundled catalog as rows (one per instance type and zone)."""

from __future__ import annotations

from dstack_iac.backends.cloud.catalog import gpu_fields, gpu_memory_mib, optional_float
from dstack_iac.model.offers import Catalog, CatalogRow

SOURCE_URL = "https://raw.githubusercontent.com/skypilot-org/skypilot-catalog/master/catalogs/v7/aws/vms.csv"
FAMILIES = ("g4dn.", "g5.", "g6.", "g6e.", "p3.", "p4d.", "p4de.", "p5.", "t3.", "m5.")


def build_rows(records: list[dict[str, str]]) -> list[CatalogRow]:
    by_zone: dict[tuple[str, str], CatalogRow] = {}
    for row in records:
        count = int(float(row["AcceleratorCount"] or 0))
        parsed = CatalogRow(
            "aws", row["Region"], row["AvailabilityZone"], row["InstanceType"], int(float(row["vCPUs"])),
            float(row["MemoryGiB"]), *gpu_fields(row["AcceleratorName"] or None, count, gpu_memory_mib(row["GpuInfo"])),
            float(row["Price"]), optional_float(row["SpotPrice"]),
        )
        key = (parsed.instance_type, parsed.zone)
        # The snapshot lists a few p4de zones twice; keep the row that knows the spot price.
        if key not in by_zone or (by_zone[key].spot_price is None and parsed.spot_price is not None):
            by_zone[key] = parsed
    return list(by_zone.values())


def keep(row: dict[str, str]) -> bool:
    return (row.get("InstanceType") or "").startswith(FAMILIES)


CATALOG = Catalog(name="aws", build=build_rows, source_url=SOURCE_URL, keep=keep, format_version=3)
