"""The program dstack-iac runs on a fleet's hosts. Nothing of dstack-iac is installed on a host:
this file is sent over SSH on each use (`python3 -` reads it from stdin) and answers in JSON.

It is the only code that changes anything on someone else's machine, so it does exactly this:

    inventory   what the host has (OS, CPUs, memory, disk, GPUs, Pythons); writes nothing
    acquire     a run's lease: its run directory (which holds the lease's locks, in lease.json),
                its key in the authorized keys file, its cgroup when one can be made, its watchdog
    release     the reverse, idempotent: the key line, every process of the run, its cgroup, the
                run directory
    expire      `release`, started by the run's watchdog when its lease was not renewed

Everything lives under `${DSTACK_IAC_HOST_DIR:-$HOME/.dstack-iac}`, in `runs/<run>-<rank>/`
only: the host dir and `runs/` exist while a lease does (a host dir that was there before stays,
with whatever its owner put in it), so a host after its last run is as it was before the first.
Every change is made under an flock on the host dir itself (no lock file to leave behind). The
authorized keys file is `${DSTACK_IAC_AUTHORIZED_KEYS:-$HOME/.ssh/authorized_keys}`, edited
through a temporary file renamed into place (its mode and owner kept), so it is never seen
half-written, and the user's own lines are never touched. A process is the run's only if it is in
the run's cgroup, names the run's directory (command line or environment) or is in the process
group of the run's task: a host's other processes are never signalled.

Standard library only, and Python 3.6+ (hosts run what they run): no annotations beyond builtins.
"""

import fcntl
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

KEY_TAG = "dstack-iac"  # the comment that marks a run's line: dstack-iac:<run>:<rank>[:flags]
KEY_OPTIONS = "restrict,port-forwarding"  # the run's key: commands and tunnels, no agent, no pty
STALE_SECONDS = 60  # a lock without its run directory, this old, belongs to a release cut short
GRACE = 3.0  # seconds between SIGTERM and SIGKILL

# A run's dead-man switch, as on local nodes: when the lease file has not been touched for $2
# seconds, the run is released (its key, processes, cgroup and directory). Plain sh, so it costs
# nothing while it waits.
WATCHDOG = r"""
dir=$1 seconds=$2 python=$3
while sleep 2; do
  last=$(stat -c %Y "$dir/lease" 2>/dev/null) || exit 0
  [ $(( $(date +%s) - last )) -gt "$seconds" ] || continue
  exec "$python" "$dir/host.py" expire "$dir"
done
"""


def host_dir() -> str:
    return os.environ.get("DSTACK_IAC_HOST_DIR") or os.path.join(os.path.expanduser("~"), ".dstack-iac")


def authorized_keys_path() -> str:
    configured = os.environ.get("DSTACK_IAC_AUTHORIZED_KEYS")
    return configured or os.path.join(os.path.expanduser("~"), ".ssh", "authorized_keys")


def _lease_name(run: str, rank: int) -> str:
    return "%s-%d" % (run, rank)


# --- inventory ---------------------------------------------------------------------------------

def _meminfo_gb() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _os_name() -> str:
    try:
        with open("/etc/os-release") as release:
            for line in release:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _run(command: list, timeout: float = 20) -> str:
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=timeout,
                              universal_newlines=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout if done.returncode == 0 else ""


def _nvidia_gpus() -> list:
    out = _run(["nvidia-smi", "--query-gpu=index,name,memory.total,compute_cap", "--format=csv,noheader,nounits"])
    gpus = []
    for line in out.strip().splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) < 3:
            continue
        try:
            gpus.append({"vendor": "nvidia", "index": int(parts[0]), "name": parts[1],
                         "memory_gb": round(float(parts[2]) / 1024),
                         "compute_capability": parts[3] if len(parts) > 3 and parts[3] not in ("", "[N/A]") else None})
        except ValueError:
            continue
    return gpus


def _amd_gpus() -> list:
    """amd-smi (ROCm 6+), else rocm-smi: each prints JSON, in shapes that differ by version."""
    gpus = []
    out = _run(["amd-smi", "static", "--asic", "--vram", "--json"])
    try:
        items = json.loads(out) if out else []
    except ValueError:
        items = []
    for position, item in enumerate(items if isinstance(items, list) else []):
        size = ((item.get("vram") or {}).get("size") or {})
        value = size.get("value", 0) if isinstance(size, dict) else size
        unit = size.get("unit", "MB") if isinstance(size, dict) else "MB"
        megabytes = float(value or 0) * (1024 if str(unit).upper().startswith("G") else 1)
        gpus.append({"vendor": "amd", "index": int(item.get("gpu", position)),
                     "name": str((item.get("asic") or {}).get("market_name") or "AMD GPU"),
                     "memory_gb": round(megabytes / 1024), "compute_capability": None})
    if gpus:
        return gpus
    out = _run(["rocm-smi", "--showproductname", "--showmeminfo", "vram", "--json"])
    try:
        cards = json.loads(out) if out else {}
    except ValueError:
        cards = {}
    for name, card in sorted(cards.items()):
        if not name.startswith("card") or not isinstance(card, dict):
            continue
        total = next((v for k, v in card.items() if "VRAM Total Memory" in k), 0)
        gpus.append({"vendor": "amd", "index": int(name[4:] or 0),
                     "name": str(card.get("Card Series") or card.get("Card series") or "AMD GPU"),
                     "memory_gb": round(float(total or 0) / 1024 ** 3), "compute_capability": None})
    return gpus


def _addresses() -> list:
    out = _run(["ip", "-4", "-o", "addr", "show"])
    found = [field.split("/")[0] for line in out.splitlines() for field in line.split()[3:4]]
    if not found:
        found = _run(["hostname", "-I"]).split()
    return found


def inventory(_args: dict) -> dict:
    """What the host has, measured; also which Pythons it offers and where dstack-iac would keep
    its files. Writes nothing."""
    base = host_dir()
    probe = base
    while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    connection = os.environ.get("SSH_CONNECTION", "").split()
    machine = platform.machine().lower()
    pythons = {}
    for minor in range(8, 15):
        found = shutil.which("python3.%d" % minor)
        if found:
            pythons["3.%d" % minor] = found
    return {
        "hostname": platform.node(),
        "os": _os_name(),
        "kernel": platform.release(),
        "arch": "arm" if machine in ("arm64", "aarch64") else "x86",
        "cpus": os.cpu_count() or 1,
        "memory_gb": round(_meminfo_gb(), 1),
        "disk_gb": round(shutil.disk_usage(probe).total / 1024 ** 3, 1),
        "gpus": _nvidia_gpus() or _amd_gpus(),
        "python": "%d.%d" % sys.version_info[:2],
        "pythons": pythons,
        "address": connection[2] if len(connection) > 2 else None,  # where this SSH session arrived
        "addresses": _addresses(),
        "host_dir": base,
        "authorized_keys": authorized_keys_path(),
        # What the lease's watchdog (plain sh) needs: GNU stat's -c, and date +%s.
        "tools": {"bash": bool(shutil.which("bash")), "unshare": bool(shutil.which("unshare")),
                  "stat": _run(["stat", "-c", "%Y", "/"]).strip().isdigit(),
                  "date": _run(["date", "+%s"]).strip().isdigit()},
    }


# --- the authorized keys file ------------------------------------------------------------------

CREATED_FLAG = ".created-by-dstack-iac"  # in a host dir that a lease made: the last release removes it


class _HostLock:
    """Every change dstack-iac makes on this host (leases, the authorized keys file), one at a
    time: an flock on the host dir itself, so no lock file outlives it. The dir is made when
    missing (and flagged as ours); the last release may remove it, so a waiter that finds its
    locked dir gone (another inode, or none) makes it again."""

    def __init__(self, base: str):
        self.base = base

    def __enter__(self):
        while True:
            try:
                os.mkdir(self.base, 0o700)
                open(os.path.join(self.base, CREATED_FLAG), "w").close()
            except FileExistsError:
                pass
            except FileNotFoundError:
                raise FileNotFoundError("the parent of the dstack-iac host dir %s does not exist" % self.base) from None
            try:
                fd = os.open(self.base, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except FileNotFoundError:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                now, held = os.stat(self.base), os.fstat(fd)
                if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                    self.fd = fd
                    return self
            except FileNotFoundError:
                pass
            os.close(fd)

    def __exit__(self, *_exc):
        os.close(self.fd)


def _tidy(base: str) -> None:
    """With the host lock held: `runs/` goes when no lease is left, and the host dir too when a
    lease made it and nothing else is in it."""
    try:
        os.rmdir(os.path.join(base, "runs"))
    except OSError:
        return
    try:
        if os.listdir(base) == [CREATED_FLAG]:
            os.unlink(os.path.join(base, CREATED_FLAG))
            os.rmdir(base)
    except OSError:
        pass


def _tag(line: bytes):
    """(run, rank, flags) of a line dstack-iac added, else None."""
    words = line.strip().split()
    if not words:
        return None
    parts = words[-1].decode(errors="replace").split(":")
    if len(parts) < 3 or parts[0] != KEY_TAG:
        return None
    return parts[1], parts[2], set(filter(None, parts[3].split(","))) if len(parts) > 3 else set()


def _with_flags(line: bytes, flags: set) -> bytes:
    ending = b"\n" if line.endswith(b"\n") else b""
    words = line.rstrip(b"\n").split(b" ")
    run, rank, _old = _tag(line)
    words[-1] = ("%s:%s:%s" % (KEY_TAG, run, rank) + (":" + ",".join(sorted(flags)) if flags else "")).encode()
    return b" ".join(words) + ending


def _replace(path: str, data: bytes, like) -> None:
    """Write `path` whole through a temporary file renamed over it, with the mode and owner of
    the file it replaces (`like`, an os.stat_result, or None for a new file: 0600)."""
    fd, partial = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".authorized_keys.dstack-iac.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(partial, (like.st_mode & 0o7777) if like is not None else 0o600)
        if like is not None and hasattr(os, "chown"):
            try:
                os.chown(partial, like.st_uid, like.st_gid)
            except PermissionError:
                pass  # not root: the file is ours already
        os.replace(partial, path)
    except BaseException:
        try:
            os.unlink(partial)
        except OSError:
            pass
        raise


def add_key(path: str, run: str, rank: int, public_key: str) -> bool:
    """Append the run's key line (once), the host lock held. Remembers in the line's comment what
    it changed besides itself, so that removing it gives back the very same bytes: `nl` when the
    file did not end with a newline (one was added before the line), `new` when there was no file."""
    real = os.path.realpath(path)
    words = public_key.split()
    if len(words) < 2:
        raise ValueError("the run's public key is not an OpenSSH public key")
    try:
        with open(real, "rb") as handle:
            data = handle.read()
        like = os.stat(real)
    except FileNotFoundError:
        data, like = b"", None
    if not os.path.isdir(os.path.dirname(real)):
        raise FileNotFoundError("the directory of the authorized keys file %s does not exist" % real)
    for line in data.splitlines(True):
        tag = _tag(line)
        if tag is not None and tag[:2] == (run, str(rank)):
            return False
    flags = []
    if data and not data.endswith(b"\n"):
        flags.append("nl")
        data += b"\n"
    if like is None:
        flags.append("new")
    comment = "%s:%s:%d" % (KEY_TAG, run, rank) + (":" + ",".join(flags) if flags else "")
    line = "%s %s %s %s\n" % (KEY_OPTIONS, words[0], words[1], comment)
    _replace(real, data + line.encode(), like)
    return True


def remove_key(path: str, run: str, rank: int) -> bool:
    """Remove the run's key line (the host lock held), and undo what adding it changed (see
    add_key). Another run's line that follows inherits the `nl` it now depends on; the file
    dstack-iac created goes when only its lines were in it."""
    real = os.path.realpath(path)
    try:
        with open(real, "rb") as handle:
            data = handle.read()
        like = os.stat(real)
    except FileNotFoundError:
        return False
    lines = data.splitlines(True)
    ours = [index for index, line in enumerate(lines)
            if _tag(line) is not None and _tag(line)[:2] == (run, str(rank))]
    if not ours:
        return False
    created = False
    for index in reversed(ours):
        flags = _tag(lines[index])[2]
        del lines[index]
        created = created or "new" in flags
        if "nl" in flags:
            if index == len(lines):  # it was the last line: drop the newline added before it
                if index > 0 and lines[index - 1].endswith(b"\n"):
                    lines[index - 1] = lines[index - 1][:-1]
            elif _tag(lines[index]) is not None:  # another run's line now holds the separator
                lines[index] = _with_flags(lines[index], _tag(lines[index])[2] | {"nl"})
    if created:
        tagged = [index for index, line in enumerate(lines) if _tag(line) is not None]
        if len(tagged) == len(lines):
            if not lines:
                os.unlink(real)
                return True
            lines[tagged[0]] = _with_flags(lines[tagged[0]], _tag(lines[tagged[0]])[2] | {"new"})
    _replace(real, b"".join(lines), like)
    return True


# --- processes ---------------------------------------------------------------------------------

def _parent(pid: int):
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _ancestors(pid: int) -> set:
    found = set()
    while pid and pid not in found:
        found.add(pid)
        pid = _parent(pid)
    return found


def _alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _names(pid: int, needle: bytes) -> bool:
    """Whether the process's command line or environment names the directory `needle`."""
    for part in ("cmdline", "environ"):
        try:
            with open("/proc/%d/%s" % (pid, part), "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        if needle + b"/" in data or needle + b"\0" in data or data.endswith(needle):
            return True
    return False


def run_processes(directory: str) -> list:
    """Live processes that name the run's directory, this program and its callers excepted."""
    needle = directory.encode()
    spare = _ancestors(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in spare and _alive(int(entry)) and _names(int(entry), needle):
            found.append(int(entry))
    return sorted(found)


def _task_group(directory: str):
    """The process group of the run's task (its login shell's pid), when that shell is still the
    run's: a pid file is never trusted alone (the pid may belong to someone else by now)."""
    try:
        with open(os.path.join(directory, "task.pid")) as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    if pid > 1 and _alive(pid) and _names(pid, directory.encode()):
        try:
            return os.getpgid(pid)
        except OSError:
            return None
    return None


def _signal_all(pids: list, group, sig: int) -> None:
    if group is not None:
        try:
            os.killpg(group, sig)
        except OSError:
            pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


# --- the run's cgroup ----------------------------------------------------------------------------
# A task that leaves its process group (setsid) and clears its environment (env -i) is no longer
# found by either; a cgroup keeps it: the node script moves itself into the lease's cgroup
# (runs/<lease>/cgroup names it) and everything it starts stays there. Made where the SSH user
# may make one (root, or a delegated cgroup v2 subtree); without, the group and the /proc scan.

CGROUP_PREFIX = "dstack-iac-"


def _cgroup2_root():
    """Where cgroup v2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host)."""
    try:
        with open("/proc/self/mountinfo") as mountinfo:
            for line in mountinfo:
                fields = line.split()
                if "-" in fields and fields[fields.index("-") + 1] == "cgroup2":
                    return fields[4]
    except OSError:
        pass
    return None


def make_cgroup(lease: str):
    """A cgroup of the lease's own, a child of this session's cgroup v2, or None when none can
    be made here."""
    root = _cgroup2_root()
    try:
        with open("/proc/self/cgroup") as own:
            mine = next((line.strip()[3:] for line in own if line.startswith("0::")), None)
    except OSError:
        mine = None
    if root is None or mine is None:
        return None
    path = os.path.join(root, mine.lstrip("/"), CGROUP_PREFIX + lease)
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except OSError:
        return None
    if not os.access(os.path.join(path, "cgroup.procs"), os.W_OK):
        _remove_cgroup(path)
        return None
    return path


def _lease_cgroup(directory: str):
    """The lease's cgroup as its run directory names it, only if it is one of ours: a name the
    task could have rewritten never points release at anyone else's processes."""
    try:
        with open(os.path.join(directory, "cgroup")) as handle:
            path = os.path.realpath(handle.read().strip())
    except OSError:
        return None
    root = _cgroup2_root()
    if (root is None or not path.startswith(os.path.realpath(root) + "/")
            or os.path.basename(path) != CGROUP_PREFIX + os.path.basename(directory) or not os.path.isdir(path)):
        return None
    return path


def _cgroup_pids(path) -> list:
    if path is None:
        return []
    found = []
    for current, children, _files in os.walk(path):
        try:
            with open(os.path.join(current, "cgroup.procs")) as procs:
                found += [int(line) for line in procs if line.strip()]
        except (OSError, ValueError):
            continue
    return found


def _remove_cgroup(path) -> None:
    """rmdir, deepest first (a task may have made its own sub-cgroups); an empty cgroup only."""
    for current, _children, _files in sorted(os.walk(path), key=lambda item: -len(item[0])):
        for _attempt in range(20):
            try:
                os.rmdir(current)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)  # its last process is still being reaped


def _kill_cgroup(path) -> None:
    try:
        with open(os.path.join(path, "cgroup.kill"), "w") as kill:  # Linux 5.14+: the whole subtree, atomically
            kill.write("1")
        return
    except OSError:
        pass
    for pid in _cgroup_pids(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def stop_processes(directory: str) -> list:
    """SIGTERM the run's processes (its cgroup's and its task's group included), SIGKILL what
    remains after the grace period, remove its cgroup. Returns the pids found."""
    group = _task_group(directory)
    cgroup = _lease_cgroup(directory)

    def remaining() -> list:
        return sorted(set(run_processes(directory)) | set(_cgroup_pids(cgroup)))

    pids = remaining()
    if group is None and not pids:
        if cgroup is not None:
            _remove_cgroup(cgroup)
        return []
    _signal_all(pids, group, signal.SIGTERM)
    deadline = time.time() + GRACE
    while time.time() < deadline:
        if not remaining() and (group is None or not _group_alive(group)):
            break
        time.sleep(0.1)
    else:
        if cgroup is not None:
            _kill_cgroup(cgroup)
        _signal_all(remaining(), group, signal.SIGKILL)
    if cgroup is not None:
        deadline = time.time() + GRACE
        while _cgroup_pids(cgroup) and time.time() < deadline:
            time.sleep(0.05)
        _remove_cgroup(cgroup)
    return pids


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except OSError:
        return False


# --- leases ------------------------------------------------------------------------------------

def _lease_of(directory: str):
    try:
        with open(os.path.join(directory, "lease.json")) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _stale(directory: str, lease) -> bool:
    """A lease whose run can no longer be running: its time is up and its watchdog is gone (a
    host that rebooted), or an acquire cut short before it recorded the lease."""
    if lease is None:
        return _age(directory) > STALE_SECONDS
    seconds = int(lease.get("lease_seconds") or 0)
    try:
        renewed = os.stat(os.path.join(directory, "lease")).st_mtime
    except OSError:
        return _age(directory) > STALE_SECONDS
    return bool(seconds) and time.time() - renewed > seconds + STALE_SECONDS and not run_processes(directory)


def _age(path: str) -> float:
    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return 0.0


def _busy(base: str, names: list, lease: str) -> dict:
    """With the host lock held: {"busy": lock, "owner": lease} when another lease holds one of
    `names` (a lease's locks are listed in its lease.json), else {}. A stale lease that is in
    the way is released first."""
    runs = os.path.join(base, "runs")
    wanted = set(names)
    for other in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
        directory = os.path.join(runs, other)
        if other == lease or not os.path.isdir(directory):
            continue
        held = _lease_of(directory)
        overlap = sorted(wanted & set(held.get("locks") or [])) if held is not None else sorted(wanted)
        if not overlap:
            continue
        if _stale(directory, held):
            _release_held(base, other.rpartition("-")[0], int(other.rpartition("-")[2] or 0))
            continue
        return {"busy": overlap[0], "owner": other}
    return {}


def _cache_links(base: str, directory: str) -> None:
    """The run's caches are in its directory (removed with it). A host's owner who wants runs to
    share them makes them in the host dir (wheels/, venv-seeds/, pip-cache/, builds/): the run's
    are then links to those."""
    cache = os.path.join(directory, "cache")
    os.makedirs(cache, mode=0o700, exist_ok=True)
    for name in CACHES:
        shared, link = os.path.join(base, name), os.path.join(cache, name)
        if os.path.isdir(shared) and not os.path.lexists(link):
            os.symlink(shared, link)


CACHES = ("pip-cache", "wheels", "venv-seeds", "builds")


def acquire(args: dict) -> dict:
    """The run's lease on this host: its directory (its locks), its key, its cgroup, its watchdog."""
    run, rank = args["run"], int(args["rank"])
    lease = _lease_name(run, rank)
    base = host_dir()
    directory = os.path.join(base, "runs", lease)
    with _HostLock(base):
        locks = list(args.get("locks") or [])
        busy = _busy(base, locks, lease)
        if busy:
            _tidy(base)
            return busy
        try:
            os.makedirs(os.path.join(directory, "workflow"), mode=0o700, exist_ok=True)
            seconds = int(args.get("lease_seconds") or 0)
            with open(os.path.join(directory, "lease.json"), "w") as handle:
                json.dump({"run": run, "rank": rank, "lease_seconds": seconds, "locks": locks}, handle)
            with open(os.path.join(directory, "lease"), "w"):
                pass
            with open(os.path.join(directory, "host.py"), "w") as handle:
                handle.write(args["program"])
            _cache_links(base, directory)
            cgroup = make_cgroup(lease)
            if cgroup is not None:
                with open(os.path.join(directory, "cgroup"), "w") as handle:
                    handle.write(cgroup + "\n")
            add_key(authorized_keys_path(), run, rank, args["public_key"])
            if seconds:
                subprocess.Popen(["sh", "-c", WATCHDOG, "dstack-iac-lease", directory, str(seconds), sys.executable],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True, cwd="/")
        except BaseException:
            _release_held(base, run, rank)
            _tidy(base)
            raise
    return {"host_dir": base, "directory": directory, "working_dir": os.path.join(directory, "workflow"),
            "address": (os.environ.get("SSH_CONNECTION", "").split() + [None] * 3)[2], "cgroup": cgroup}


def _release_held(base: str, run: str, rank: int) -> list:
    """`release` with the host lock held."""
    lease = _lease_name(run, rank)
    directory = os.path.join(base, "runs", lease)
    removed = []
    if remove_key(authorized_keys_path(), run, rank):
        removed.append("its key in %s" % authorized_keys_path())
    killed = stop_processes(directory)
    if killed:
        removed.append("processes %s" % " ".join(str(pid) for pid in killed))
    if os.path.isdir(directory):
        shutil.rmtree(directory, ignore_errors=True)
        removed.append("its directory %s (and its locks)" % directory)
    return removed


def release(args: dict) -> dict:
    """Undo `acquire`, whatever of it happened: the key first (no new login with it), then the
    run's processes and cgroup, its directory (which holds its locks), and the host dir's
    `runs/` (and the host dir itself, when a lease made it) once no lease is left. Running it
    twice is harmless."""
    run, rank = args["run"], int(args["rank"])
    base = host_dir()
    with _HostLock(base):  # makes the host dir when it is gone: _tidy removes it again
        removed = _release_held(base, run, rank)
        _tidy(base)
    return {"removed": removed}


def expire(directory: str) -> None:
    """The watchdog's end: the lease was not renewed in time."""
    try:
        with open(os.path.join(directory, "lease.json")) as handle:
            lease = json.load(handle)
    except (OSError, ValueError):
        return
    release({"run": lease["run"], "rank": lease["rank"]})


COMMANDS = {"inventory": inventory, "acquire": acquire, "release": release}


def entry(command: str, arguments: str) -> None:
    """What the caller appends to this program's text: run `command`, print its JSON answer."""
    result = COMMANDS[command](json.loads(arguments))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__" and sys.argv[1:2] == ["expire"]:
    expire(sys.argv[2])
