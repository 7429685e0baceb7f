"""Local runs see their volumes at the configured paths through a private mount namespace.

The task's shell becomes `unshare --mount --propagation private`: bind mounts made inside it are
invisible to the host and to other runs, so two runs can mount different volumes at the same
path and nothing is written at that path on the host (at most an empty mount-point directory is
created). Without root, a user namespace maps the user to root inside it.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence


def namespaced_command(script_path: str, mounts: Sequence[tuple[str, str]], as_root: bool | None = None) -> str:
    """The shell command that runs `script_path` with `mounts` ((source, path) pairs) in place.
    It `exec`s all the way down, so the task keeps the session's pid and process group."""
    if not mounts:
        return f"exec bash {shlex.quote(script_path)}"
    as_root = os.geteuid() == 0 if as_root is None else as_root
    steps = []
    for source, path in mounts:
        steps.append(f"mkdir -p {shlex.quote(path)} && mount --bind {shlex.quote(source)} {shlex.quote(path)}")
    steps.append(f"exec bash {shlex.quote(script_path)}")
    inner = " && ".join(steps)
    unshare = "unshare --mount --propagation private" if as_root else \
        "unshare --user --map-root-user --mount --propagation private"
    return f"exec {unshare} -- bash -c {shlex.quote(inner)}"
