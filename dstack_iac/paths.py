"""Where dstack-iac keeps its state on this machine, and how it writes there.

One place, so every layer agrees. The state dir holds keys and secrets, so nothing here trusts
what it finds: directories must belong to the user and not be writable by others, files are
written through a private temporary file and renamed (never through a planted symlink), and
appends refuse symlinks.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from dstack_iac.errors import EnvironmentProblem

STATE_DIR_ENV = "DSTACK_IAC_HOME"
WHEELHOUSE_ENV = "DSTACK_IAC_WHEELHOUSE"


def state_dir() -> Path:
    """The user state dir: `$DSTACK_IAC_HOME` (a relative one is taken from the current
    directory), else `~/.dstack-iac`."""
    configured = os.environ.get(STATE_DIR_ENV)
    if not configured:
        return Path.home() / ".dstack-iac"
    return Path(os.path.abspath(os.path.expanduser(configured)))


def backend_url() -> str:
    """The Pulumi backend: an explicit PULUMI_BACKEND_URL wins; else a file backend in the state
    dir (percent-encoded, so any path works)."""
    return os.environ.get("PULUMI_BACKEND_URL") or (state_dir() / "pulumi").as_uri()


def cache_dir() -> Path:
    """Per-user cache shared by all state dirs (the Pulumi engine build, the wheel cache)."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "dstack-iac"


def wheelhouse_dir() -> Path:
    """Wheels pip downloaded for local runs, shared by all of them: `$DSTACK_IAC_WHEELHOUSE`,
    else `<cache_dir>/wheels`. Safe to delete at any time."""
    configured = os.environ.get(WHEELHOUSE_ENV)
    return Path(configured).expanduser() if configured else cache_dir() / "wheels"


def runs_dir() -> Path:
    return state_dir() / "runs"


def run_dir(run_name: str) -> Path:
    return runs_dir() / run_name


def volumes_dir() -> Path:
    return state_dir() / "volumes"


def _unusable(path: Path, why: str) -> EnvironmentProblem:
    return EnvironmentProblem(f"the state dir cannot be used: {path} {why}",
                              hint=f"fix it, or point {STATE_DIR_ENV} at a directory of your own")


def _check_owned(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISDIR(info.st_mode):
        raise _unusable(path, "is not a directory")
    if info.st_uid != os.geteuid():
        raise _unusable(path, f"belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}): "
                              "another user could read or replace what dstack-iac keeps there")
    if info.st_mode & 0o022:
        os.chmod(path, stat.S_IMODE(info.st_mode) & ~0o077)


def ensure_private_dir(path: Path) -> Path:
    """`path` as a directory only the user can enter, created (0700) with its missing parents.

    Inside the state dir a symlink is refused (dstack-iac never makes one: it would be planted);
    the state dir itself may be a symlink to a directory of the user's."""
    root = state_dir()
    missing: list[Path] = []
    probe = path
    while True:
        try:
            info = probe.lstat()
        except FileNotFoundError:
            missing.append(probe)
            if probe.parent == probe:
                break
            probe = probe.parent
            continue
        except OSError as exc:
            raise _unusable(probe, f"cannot be read ({exc.strerror})") from None
        inside = probe != root and root in probe.parents
        if stat.S_ISLNK(info.st_mode):
            if inside:
                raise _unusable(probe, "is a symlink, which dstack-iac never creates there (refusing to follow it)")
            info = probe.stat()
        if probe == root or inside:
            _check_owned(probe, info)
        elif not stat.S_ISDIR(info.st_mode):
            raise _unusable(probe, "is a file, not a directory")
        break
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            _check_owned(directory, directory.lstat())
        except OSError as exc:
            raise _unusable(directory, f"cannot be created ({exc.strerror})") from None
    return path


def write_private(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Write a whole file atomically and privately: a fresh temporary file in the same directory
    (O_EXCL, `mode`), renamed over `path`. A full disk leaves the old file and no partial one."""
    ensure_private_dir(path.parent)
    payload = data.encode() if isinstance(data, str) else data
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(partial, mode)
        os.replace(partial, path)
    except OSError as exc:
        Path(partial).unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise EnvironmentProblem(f"cannot write {path}: {exc.strerror}",
                                     hint="free some space (or make the state dir writable) and try again") from None
        raise


def open_private_append(path: Path):
    """A private append-only text handle on `path` (line-buffered); refuses a symlink there."""
    ensure_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "a", buffering=1, encoding="utf-8", errors="replace")


def check_state_dir() -> None:
    """Fail early when the state dir cannot be used, without creating anything: an existing one
    must be a writable directory of the user's; a missing one needs a writable place to go."""
    root = state_dir()
    probe = root
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent
    if probe == root:
        info = os.stat(root) if root.exists() else root.lstat()
        _check_owned(root, info)
    elif not probe.is_dir():
        raise _unusable(probe, "is a file, not a directory")
    _probe_write(probe)


def _probe_write(directory: Path) -> None:
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".dstack-iac-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise _unusable(directory, f"cannot be written ({exc.strerror})") from None


def require_usable_state_dir() -> Path:
    """The state dir, created if need be, and proven writable (a read-only disk or a file in the
    way is an error here, before anything is planned, not a strange failure later)."""
    root = ensure_private_dir(state_dir())
    _probe_write(root)
    return root
