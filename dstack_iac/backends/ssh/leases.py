"""A run's lease on one host, as this machine remembers it: a marker file written before anything
is done on the host and removed only once the host has released the lease. The marker is how a
lease the engine never heard of (a create cut short) is still found and released (`sweep`,
`stop`, `gc`), and how `fleet list`, planning and `fleet delete` know which hosts are in use.

Markers live in the run's directory in the state dir: `runs/<run>/leases/<rank>.json`. They
hold where the host is and which locks and GPUs the lease has, never a key (the identity file is
named by its path). Runs in the provider process: standard library and paramiko only (the CLI
reads the same files through `records.LeaseMarker`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dstack_iac.backends.ssh.hosts import HostError, Target, connect
from dstack_iac.paths import write_private

LEASES_DIR = "leases"


def marker_path(run_dir: str | Path, rank: int) -> Path:
    return Path(run_dir) / LEASES_DIR / f"{rank}.json"


def write_marker(run_dir: str | Path, rank: int, marker: dict[str, Any]) -> None:
    write_private(marker_path(run_dir, rank), json.dumps(marker, indent=2))


def read_marker(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def markers(run_dir: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    directory = Path(run_dir) / LEASES_DIR
    found = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        marker = read_marker(path)
        if marker is not None:
            found.append((path, marker))
    return found


def release(target: Target, run: str, rank: int) -> list[str]:
    """Release the run's lease on the host (idempotent): what was removed there. HostError when
    the host cannot be reached, saying what finishes the job."""
    try:
        connection = connect(target)
    except HostError as exc:
        raise HostError(f"{exc}; the lease of {run} there (its key, processes, directory and lock) stays until "
                        f"`dstack-iac stop {run}` succeeds once the host answers again (or the host's watchdog "
                        f"ends it when the lease runs out)") from None
    try:
        answer = connection.call("release", {"run": run, "rank": rank})
    finally:
        connection.close()
    return [f"{item} on {target.label}" for item in answer.get("removed", [])]
