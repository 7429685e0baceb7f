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


def namespaced_command(script_path: str, mounts: Sequence[tuple[str, str]], as_root: bool | None = None,
                       private_roots: Sequence[str] = (), kept_dirs: Sequence[str] = (),
                       scratch: str | None = None) -> str:
    """The shell command that runs `script_path` with `mounts` ((source, path) pairs) in place.
    Each of `private_roots` is first overlaid (on a tmpfs at `scratch`), so whatever the task
    writes under it stays in the namespace; `kept_dirs` beneath a private root stay the
    machine's own. Sources and kept directories are opened before any overlay hides them and
    bound from their descriptors. It `exec`s all the way down, so the task keeps the session's
    pid and process group."""
    if not mounts and not private_roots:
        return f"exec bash {shlex.quote(script_path)}"
    as_root = os.geteuid() == 0 if as_root is None else as_root
    steps, descriptors = [], {}
    for path in [*kept_dirs, *(source for source, _ in mounts)]:
        if path not in descriptors:
            descriptors[path] = 10 + len(descriptors)
            steps.append(f"exec {descriptors[path]}<{shlex.quote(path)}")
    if private_roots:
        if scratch is None:
            raise ValueError("private roots need a scratch directory for their overlays")
        steps.append(f"mkdir -p {shlex.quote(scratch)} && mount -t tmpfs dstack-private {shlex.quote(scratch)}")
        for index, root in enumerate(private_roots):
            upper, work = f"{scratch}/upper{index}", f"{scratch}/work{index}"
            steps.append(f"mkdir -p {shlex.quote(upper)} {shlex.quote(work)} && mount -t overlay dstack-private "
                         f"-o {shlex.quote(f'lowerdir={root},upperdir={upper},workdir={work}')} {shlex.quote(root)}")
        for kept in kept_dirs:
            steps.append(f"mount --no-canonicalize --bind /proc/self/fd/{descriptors[kept]} {shlex.quote(kept)}")
    for source, path in mounts:
        steps.append(f"mkdir -p {shlex.quote(path)} && "
                     f"mount --no-canonicalize --bind /proc/self/fd/{descriptors[source]} {shlex.quote(path)}")
    if descriptors:
        steps.append(" ".join(f"exec {fd}<&-" for fd in descriptors.values()))
    steps.append(f"exec bash {shlex.quote(script_path)}")
    inner = " && ".join(steps)
    unshare = "unshare --mount --propagation private" if as_root else \
        "unshare --user --map-root-user --mount --propagation private"
    return f"exec {unshare} -- bash -c {shlex.quote(inner)}"
