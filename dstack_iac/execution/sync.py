"""Incremental sync of the working directory to a run's nodes (`--reload`): only the files that
changed travel (one tar.gz through the run's SSH connection, as the first upload), and what was
deleted locally is deleted on the nodes. Paths are the working directory's, relative, checked
against the same ignore rules as the first upload (`.gitignore`, `.dstackignore`)."""

from __future__ import annotations

import io
import shlex
import tarfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dstack_iac.execution.group import NodeGroup
from dstack_iac.execution.workdir import IgnoreRules


def ignored_path(rules: IgnoreRules, relative: str, is_dir: bool) -> bool:
    """Whether the upload leaves `relative` out: it, or any directory above it, is ignored."""
    parts = PurePosixPath(relative).parts
    for depth in range(1, len(parts)):
        if rules.ignored("/".join(parts[:depth]), True):
            return True
    return rules.ignored(relative, is_dir)


def safe_relative(root: Path, path: Path) -> str | None:
    """`path` relative to `root` in POSIX form, or None when it is not inside."""
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:
        return None
    if relative in ("", ".") or relative.startswith("../") or "\n" in relative:
        return None
    return relative


@dataclass
class SyncBatch:
    """What changed since the last sync: files to send and paths to delete (relative)."""

    changed: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.changed or self.deleted)


@dataclass
class SyncReport:
    sent: list[tuple[str, int]]
    deleted: list[str]
    nodes: int
    seconds: float

    def describe(self) -> str:
        parts = []
        if self.sent:
            names = ", ".join(name for name, _ in self.sent[:5]) + (", ..." if len(self.sent) > 5 else "")
            size = sum(size for _, size in self.sent)
            parts.append(f"sent {names} ({len(self.sent)} file{'s' if len(self.sent) > 1 else ''}, "
                         f"{_size(size)})")
        if self.deleted:
            names = ", ".join(self.deleted[:5]) + (", ..." if len(self.deleted) > 5 else "")
            parts.append(f"deleted {names}")
        nodes = f"{self.nodes} node{'s' if self.nodes > 1 else ''}"
        return f"Reload: {' and '.join(parts)} to {nodes} in {self.seconds * 1000:.0f} ms"


def _size(count: int) -> str:
    for unit, scale in (("MB", 1024**2), ("KB", 1024)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def pack_files(root: Path, relatives: Iterable[str]) -> tuple[bytes, list[tuple[str, int]]]:
    """A tar.gz of the files that still exist (a link travels as the link), and what it holds."""
    buffer = io.BytesIO()
    packed: list[tuple[str, int]] = []
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for relative in sorted(relatives):
            path = root / relative
            if not (path.is_file() or path.is_symlink()):
                continue
            try:
                archive.add(path, arcname=relative, recursive=False)
            except OSError:
                continue  # gone or unreadable since it changed: the next change sends it
            packed.append((relative, path.lstat().st_size))
    return buffer.getvalue(), packed


def sync_to_group(group: NodeGroup, root: Path, batch: SyncBatch) -> SyncReport:
    """Send `batch` to every node at once; raises the first node's error."""
    started = time.perf_counter()
    archive, sent = pack_files(root, batch.changed)
    deleted = sorted(batch.deleted - {name for name, _ in sent})

    def apply(session) -> None:
        if sent:
            session.upload(archive)
        if deleted:
            working_dir = shlex.quote(session.endpoint.working_dir)
            paths = " ".join(shlex.quote(f"./{relative}") for relative in deleted)
            if not session.run(f"cd {working_dir} && rm -rf -- {paths}", timeout=30):
                raise OSError(f"node {session.endpoint.rank}: deleting {', '.join(deleted)} failed")

    group.each(apply).raise_first()
    return SyncReport(sent=sent, deleted=deleted, nodes=len(group), seconds=time.perf_counter() - started)


def fetch_file(session, remote: str, limit: int = 16 * 1024**3) -> bytes | None:
    """A file of the node, read over the run's SSH connection (a `cat` on a channel of its own);
    None when it does not exist."""
    channel = session.connection.transport.open_session()
    try:
        channel.exec_command(f"test -f {shlex.quote(remote)} && cat {shlex.quote(remote)}")
        chunks, size = [], 0
        while True:
            data = channel.recv(1024 * 1024)
            if not data:
                break
            size += len(data)
            if size > limit:
                raise OSError(f"{remote} on node {session.endpoint.rank} is larger than {limit} bytes")
            chunks.append(data)
        status = channel.recv_exit_status()
    finally:
        channel.close()
    return b"".join(chunks) if status == 0 else None
