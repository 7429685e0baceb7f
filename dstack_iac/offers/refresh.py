"""Refreshing the catalog from the source of the bundled snapshot, for users with internet.

`dstack-iac offers --refresh` downloads the current AWS and GCP tables of the SkyPilot catalog
(the same files the bundled snapshot was read from, see data/SOURCE.md), keeps the same instance
families, and writes them to `~/.cache/dstack-iac/catalog/refreshed/`, which then takes
precedence over the bundled files. Delete that directory to go back to the snapshot. Isolated
here: the network is touched only by `fetch`.
"""

from __future__ import annotations

import csv
import io
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from dstack_iac.paths import cache_dir

SOURCE_URLS = {
    "aws": "https://raw.githubusercontent.com/skypilot-org/skypilot-catalog/master/catalogs/v7/aws/vms.csv",
    "gcp": "https://raw.githubusercontent.com/skypilot-org/skypilot-catalog/master/catalogs/v7/gcp/vms.csv",
}
AWS_FAMILIES = ("g4dn.", "g5.", "g6.", "g6e.", "p3.", "p4d.", "p4de.", "p5.", "t3.", "m5.")
GCP_FAMILIES = ("a2-", "a3-", "g2-", "e2-standard-", "n1-standard-", "n2-standard-")


def refreshed_dir() -> Path:
    return cache_dir() / "catalog" / "refreshed"


def _keep(backend: str, row: dict) -> bool:
    instance = row.get("InstanceType") or ""
    if backend == "aws":
        return instance.startswith(AWS_FAMILIES)
    if instance:
        return instance.startswith(GCP_FAMILIES)
    name = row.get("AcceleratorName") or ""
    return bool(name) and not name.lower().startswith("tpu")  # GPU price rows, not TPUs


def select_rows(backend: str, text: str) -> str:
    """The source table restricted to the families the bundled catalog covers (same columns)."""
    reader = csv.DictReader(io.StringIO(text))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=reader.fieldnames, lineterminator="\n")
    writer.writeheader()
    kept = 0
    for row in reader:
        if _keep(backend, row):
            writer.writerow(row)
            kept += 1
    if kept == 0:
        raise ValueError(f"the downloaded {backend} table has none of the expected instance families")
    return out.getvalue()


def _download(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read().decode()


def refresh_catalog(fetch: Callable[[str], str] = _download) -> dict[str, int]:
    """Download, filter and install both tables; returns the rows kept per backend."""
    target = refreshed_dir()
    target.mkdir(parents=True, exist_ok=True)
    counts = {}
    for backend, url in SOURCE_URLS.items():
        table = select_rows(backend, fetch(url))
        partial = target / f"{backend}.csv.tmp"
        partial.write_text(table)
        partial.replace(target / f"{backend}.csv")
        counts[backend] = table.count("\n") - 1
    (target / "SOURCE.md").write_text(
        f"Refreshed {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from:\n"
        + "".join(f"- {url}\n" for url in SOURCE_URLS.values())
        + "SkyPilot catalog, Apache-2.0 (github.com/skypilot-org/skypilot-catalog).\n")
    return counts
