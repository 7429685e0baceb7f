"""Where a local run's `files` and `repos` land when their path is outside the node's own
directory (absolute, or `~/...`): this machine's filesystem is the host's, so such a path is
laid over privately. The nearest existing directory above it gets an overlay inside the task's
mount namespace; what the task writes there never reaches the machine."""

from __future__ import annotations

import os
from pathlib import Path

from dstack_iac.config.models import TaskConfiguration
from dstack_iac.errors import UnsupportedField

OVERLAY_UNSAFE = (",", ":", "\n")  # overlayfs option separators


def outside_paths(configuration: TaskConfiguration) -> list[tuple[str, str]]:
    """(field, path on this machine) of every files/repos path outside the working directory."""
    found = []
    for index, mapping in enumerate(configuration.files):
        if mapping.path.startswith(("/", "~")):
            found.append((f"files[{index}].path", os.path.expanduser(mapping.path)))
    for index, repo in enumerate(configuration.repos):
        if repo.path.startswith(("/", "~")):
            found.append((f"repos[{index}].path", os.path.expanduser(repo.path)))
    return found


def private_root(target: str) -> Path:
    """The directory overlaid so that `target` can be written privately: its parent, or the
    nearest directory above it that exists."""
    candidate = Path(os.path.normpath(target)).parent
    while not candidate.is_dir():
        candidate = candidate.parent
    return candidate


def check_placements(configuration: TaskConfiguration, backend: str) -> None:
    for field, target in outside_paths(configuration):
        root = private_root(target)
        if root == Path("/"):
            raise UnsupportedField(field, backend, f"{target} would be placed privately over an existing directory of "
                                   "this machine, and none exists above it but /",
                                   "use a path relative to the working directory or under ~/, or one under an "
                                   "existing directory")
        if any(char in str(root) for char in OVERLAY_UNSAFE):
            raise UnsupportedField(field, backend, f"{root} holds a ',' or ':', which an overlay cannot name",
                                   "use a path relative to the working directory")


def private_layout(configuration: TaskConfiguration, node_dir: str) -> tuple[list[str], list[str], list[tuple[str, str]],
                                                                             str | None]:
    """(private roots, kept dirs, extra binds, where the repo is unpacked) for one local node."""
    roots: list[str] = []
    binds: list[tuple[str, str]] = []
    repo_dir = None
    for field, target in outside_paths(configuration):
        root = str(private_root(target))
        if root not in roots:
            roots.append(root)
        if field.startswith("repos"):
            repo_dir = f"{node_dir}/repo"
            binds.append((repo_dir, os.path.normpath(target)))
    keep = [node_dir] if any(node_dir == r or node_dir.startswith(r.rstrip("/") + "/") for r in roots) else []
    # Overlays nest: an outer one first, so an inner one lays over the outer's view.
    roots.sort(key=lambda r: r.count("/"))
    return roots, keep, binds, repo_dir
