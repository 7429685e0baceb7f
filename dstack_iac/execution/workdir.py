"""The working directory that is uploaded to every node: files minus `.gitignore` and
`.dstackignore` matches, packed once as a tar.gz, refused over a size limit."""

from __future__ import annotations

import io
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from dstack_iac.config.grammar import format_memory, parse_memory
from dstack_iac.errors import BadInput

UPLOAD_LIMIT_ENV = "DSTACK_IAC_UPLOAD_LIMIT"
DEFAULT_UPLOAD_LIMIT = "100MB"
IGNORE_FILES = (".gitignore", ".dstackignore")
ALWAYS_IGNORED = (".git/", ".dstack-iac/", "__pycache__/", ".venv/")


class UploadTooLarge(BadInput):
    pass


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern
    negated: bool
    directory_only: bool


def _compile(pattern: str) -> _Rule | None:
    pattern = pattern.rstrip("\n")
    if not pattern.strip() or pattern.startswith("#"):
        return None
    negated = pattern.startswith("!")
    pattern = pattern[1:] if negated else pattern
    pattern = pattern.rstrip() if not pattern.endswith("\\ ") else pattern
    directory_only = pattern.endswith("/")
    pattern = pattern.rstrip("/")
    anchored = "/" in pattern
    pattern = pattern.lstrip("/")
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex += "(?:.*/)?"
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            regex += "/.*"
            i += 3
        elif pattern[i] == "*":
            regex += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            regex += "[^/]"
            i += 1
        else:
            regex += re.escape(pattern[i])
            i += 1
    prefix = "" if anchored else "(?:.*/)?"
    return _Rule(re.compile(f"^{prefix}{regex}$"), negated, directory_only)


class IgnoreRules:
    def __init__(self, lines: list[str]):
        self.rules = [rule for rule in map(_compile, lines) if rule]

    @classmethod
    def for_directory(cls, root: Path) -> IgnoreRules:
        lines = list(ALWAYS_IGNORED)
        for name in IGNORE_FILES:
            path = root / name
            if path.is_file():
                lines += path.read_text(errors="replace").splitlines()
        return cls(lines)

    def ignored(self, relative: str, is_dir: bool) -> bool:
        result = False
        for rule in self.rules:
            if rule.directory_only and not is_dir:
                continue
            if rule.regex.match(relative):
                result = not rule.negated
        return result


def upload_limit_gb() -> float:
    return parse_memory(os.environ.get(UPLOAD_LIMIT_ENV, DEFAULT_UPLOAD_LIMIT))


def collect_files(root: Path) -> list[tuple[str, Path, int]]:
    """(relative path, absolute path, size) of every file to upload, in a stable order."""
    rules = IgnoreRules.for_directory(root)
    found = []
    for directory, dirnames, filenames in os.walk(root):
        base = Path(directory)
        relative_base = base.relative_to(root).as_posix()
        prefix = "" if relative_base == "." else relative_base + "/"
        dirnames[:] = sorted(d for d in dirnames if not rules.ignored(prefix + d, True))
        # A link to a directory travels as the link (as git keeps it), never as what it points at.
        linked = [d for d in dirnames if (base / d).is_symlink()]
        dirnames[:] = [d for d in dirnames if d not in linked]
        for name in sorted(filenames + linked):
            relative = prefix + name
            path = base / name
            if rules.ignored(relative, False) or not (path.is_file() or path.is_symlink()):
                continue
            found.append((relative, path, path.lstat().st_size))
    return found


def _refuse_system_directories(root: Path) -> None:
    resolved = root.resolve()
    if resolved == Path("/") or resolved == Path.home().resolve():
        what = "the filesystem root" if resolved == Path("/") else "your home directory"
        raise BadInput(f"the working directory {root} is {what}: every file in it would be uploaded to every node; "
                       "run from a project directory (dstack-iac run path/to/project)")


def check_upload_size(root: Path, files: list[tuple[str, Path, int]]) -> None:
    """Refuse an upload over the limit, naming its largest files."""
    total = sum(size for _, _, size in files)
    limit = upload_limit_gb()
    if total / 1024**3 > limit:
        biggest = sorted(files, key=lambda f: f[2], reverse=True)[:5]
        listing = ", ".join(f"{rel} ({format_memory(round(size / 1024**2) / 1024)})" for rel, _, size in biggest)
        raise UploadTooLarge(
            f"{root} is {format_memory(round(total / 1024**2) / 1024)} to upload, over the "
            f"limit of {format_memory(limit)}; largest: {listing}. Add them to .dstackignore, or raise the limit "
            f"with {UPLOAD_LIMIT_ENV}=500MB"
        )


def pack_working_dir(root: Path) -> bytes:
    _refuse_system_directories(root)
    files = collect_files(root)
    check_upload_size(root, files)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as archive:
        for relative, path, _ in files:
            try:
                archive.add(path, arcname=relative, recursive=False)
            except OSError as exc:
                raise BadInput(f"{path} cannot be read ({exc.strerror}): fix its permissions, or add it to "
                               ".dstackignore") from None
    return buffer.getvalue()
