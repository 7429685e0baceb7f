"""Loading a backend's price catalog: the bundled snapshot (see data/SOURCE.md) or a refreshed
table, parsed once and cached.

Rows stay plain tuples until a query picks some: the `offers` command answers in well under a
second only because nothing here builds a model per row. How a cloud's table becomes rows is
the backend's business (`Catalog.build`, in its package).
"""

from __future__ import annotations

import csv
import functools
import os
import pickle
from importlib import resources
from pathlib import Path

from dstack_iac.model.offers import Catalog, CatalogRow
from dstack_iac.paths import cache_dir

SOURCE_NOTE = ("Prices: offline snapshot of the SkyPilot catalog (github.com/skypilot-org/skypilot-catalog, "
               "Apache-2.0), read 2026-11-22; see dstack_iac/offers/data/SOURCE.md")


def refreshed_dir() -> Path:
    return cache_dir() / "catalog" / "refreshed"


def bundled_file(name: str) -> Path:
    return Path(str(resources.files("dstack_iac.offers").joinpath("data", f"{name}.csv")))


def catalog_file(name: str) -> Path:
    """A refreshed table (`offers --refresh`) when there is one, else the bundled snapshot."""
    refreshed = refreshed_dir() / f"{name}.csv"
    return refreshed if refreshed.is_file() else bundled_file(name)


def read_records(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text().splitlines()))


def catalog_rows(catalog: Catalog) -> tuple[CatalogRow, ...]:
    return _rows(catalog.name, catalog.build, catalog.format_version)


@functools.lru_cache(maxsize=None)
def _rows(name: str, build, format_version: int) -> tuple[CatalogRow, ...]:
    """Parsed once per catalog file and kept in the user cache (pickled plain tuples, keyed by
    the file's size and mtime), since parsing costs most of a query."""
    try:
        data = catalog_file(name)
        info = data.stat()
        origin = "refreshed" if data.parent == refreshed_dir() else "bundled"
        cached = cache_dir() / "catalog" / f"{name}-{origin}-{info.st_size}-{info.st_mtime_ns}-v{format_version}.pickle"
    except OSError:
        return tuple(build(read_records(catalog_file(name))))
    try:
        return tuple(CatalogRow(*row) for row in pickle.loads(cached.read_bytes()))
    except (OSError, pickle.UnpicklingError, EOFError, TypeError, ValueError):
        pass
    rows = tuple(build(read_records(data)))
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(pickle.dumps([tuple(row) for row in rows], protocol=pickle.HIGHEST_PROTOCOL))
        partial.replace(cached)
    except OSError:
        pass  # a read-only cache only costs speed
    return rows


def clear_cache() -> None:
    _rows.cache_clear()
