"""Refreshing the catalogs from the source of the bundled snapshot, for users with internet.

`dstack-iac offers --refresh` downloads each catalog's current table (the same files the bundled
snapshot was read from, see data/SOURCE.md), keeps the rows its backend keeps, and writes them to
`~/.cache/dstack-iac/catalog/refreshed/`, which then takes precedence over the bundled files.
Delete that directory to go back to the snapshot. The network is touched only by `fetch`.
"""

from __future__ import annotations

import csv
import io
import time
import urllib.request
from collections.abc import Callable, Sequence

from dstack_iac.model.offers import Catalog
from dstack_iac.offers.catalog import clear_cache, refreshed_dir
from dstack_iac.paths import write_private


def select_rows(catalog: Catalog, text: str) -> str:
    """The source table restricted to the rows the catalog keeps (same columns)."""
    reader = csv.DictReader(io.StringIO(text))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=reader.fieldnames or [], lineterminator="\n")
    writer.writeheader()
    kept = 0
    for row in reader:
        if catalog.keep(row):
            writer.writerow(row)
            kept += 1
    if kept == 0:
        raise ValueError(f"the downloaded {catalog.name} table has none of the expected instance families")
    return out.getvalue()


def _download(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read().decode()


def refresh_catalogs(catalogs: Sequence[Catalog], fetch: Callable[[str], str] = _download) -> dict[str, int]:
    """Download, filter and install every table; returns the rows kept per catalog."""
    target = refreshed_dir()
    counts = {}
    for catalog in catalogs:
        table = select_rows(catalog, fetch(catalog.source_url))
        write_private(target / f"{catalog.name}.csv", table, mode=0o644)
        counts[catalog.name] = table.count("\n") - 1
    write_private(target / "SOURCE.md",
                  f"Refreshed {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from:\n"
                  + "".join(f"- {catalog.source_url}\n" for catalog in catalogs)
                  + "SkyPilot catalog, Apache-2.0 (github.com/skypilot-org/skypilot-catalog).\n", mode=0o644)
    clear_cache()
    return counts
