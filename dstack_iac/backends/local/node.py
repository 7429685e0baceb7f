"""Start and stop one local node: an sshd on its own loopback address, with its own host key,
authorized key, root directory and log, all under the run's directory in the state dir.

A node is findable from its directory alone, whatever happened to the stack: `node.json` names
its sshd the moment it is started, and every process of the node carries the directory in its
command line. `stop_node` works from either, so `stop` and `gc` always finish the job.
Runs in the provider process: standard library only (plus the package's process helpers).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

from dstack_iac.state import processes

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd")
START_TIMEOUT = 15.0
MARKER = "node.json"
LEASE = "lease"  # its mtime is the owner's last renewal (see execution/lease.py)
# Nodes get consecutive addresses from a random base in 127.0.1.0 - 127.255.254.255, so that
# concurrent runs rarely share one (the port keeps them apart when they do) and no address of a
# run, however many nodes it has, leaves the loopback network.
_FIRST = int(ipaddress.IPv4Address("127.0.1.0"))
_LAST = int(ipaddress.IPv4Address("127.255.254.255"))
MAX_NODES = 256


class NodeStartError(RuntimeError):
    pass


def find_sshd() -> str | None:
    return shutil.which("sshd") or next((p for p in SSHD_CANDIDATES if os.access(p, os.X_OK)), None)


def loopback_address(base: int, rank: int) -> str:
    return str(ipaddress.IPv4Address(base + rank))


def random_base(run_name: str) -> int:
    rng = random.Random(f"{run_name}-{os.getpid()}-{time.time_ns()}")
    return rng.randint(_FIRST, _LAST - MAX_NODES)


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def _quoted(path: Path, tokens: bool = False) -> str:
    """A path as sshd_config reads it whatever it holds (spaces, '#', quotes); `tokens` for
    options that expand %-tokens, where a literal '%' is '%%'."""
    text = str(path).replace("%", "%%") if tokens else str(path)
    if '"' in text or "\n" in text:
        raise NodeStartError(f"sshd cannot be configured with a path holding a double quote or newline: {path}")
    return f'"{text}"'


def _sshd_config(node_dir: Path, address: str, port: int, user: str) -> str:
    ssh = node_dir / "ssh"
    return "\n".join([
        f"ListenAddress {address}:{port}",
        f"HostKey {_quoted(ssh / 'host_key')}",
        f"AuthorizedKeysFile {_quoted(ssh / 'authorized_keys', tokens=True)}",
        f"PidFile {_quoted(node_dir / 'sshd.pid')}",
        f"AllowUsers {user}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        "StrictModes no",
        "AllowTcpForwarding local",
        "X11Forwarding no",
        "PrintMotd no",
        "MaxSessions 64",
        "MaxStartups 64",
        "LogLevel ERROR",
        "Subsystem sftp internal-sftp",
        "",
    ])


# The node's dead-man switch: when the lease has not been renewed for $2 seconds, the node
# ends itself: its key is no longer accepted, its sessions and task stop, then its sshd.
# Plain sh: it costs nothing while it waits. Processes are found by pid (never by name).
WATCHDOG = r"""
node=$1 seconds=$2 sshd=$3
children() {
  for stat in /proc/[0-9]*/stat; do
    fields=$(cat "$stat" 2>/dev/null) || continue
    rest=${fields##*) }; parent=${rest#* }; parent=${parent%% *}
    [ "$parent" = "$1" ] && { pid=${stat#/proc/}; echo "${pid%/stat}"; }
  done
}
while sleep 1; do
  last=$(stat -c %Y "$node/lease" 2>/dev/null) || exit 0
  [ $(( $(date +%s) - last )) -gt "$seconds" ] || continue
  rm -f "$node/ssh/authorized_keys"
  task=$(cat "$node/task.pid" 2>/dev/null)
  for signal in TERM KILL; do
    [ -n "$task" ] && kill -$signal "-$task" 2>/dev/null
    for child in $(children "$sshd"); do kill -$signal "$child" 2>/dev/null; done
    kill -$signal "$sshd" 2>/dev/null
    [ $signal = TERM ] && sleep 3
  done
  date -u +%FT%TZ > "$node/expired"
  exit 0
done
"""


def _write(path: Path, text: str, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def start_node(run_name: str, rank: int, node_dir: str, user: str, authorized_key: str, address_base: int,
               lease_seconds: int = 0) -> dict:
    sshd = find_sshd()
    if sshd is None:
        raise NodeStartError("sshd is not installed: run scripts/setup or install openssh-server")
    root = Path(node_dir)
    ssh = root / "ssh"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    ssh.mkdir(exist_ok=True, mode=0o700)
    (root / "workflow").mkdir(exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"dstack-iac-{run_name}-{rank}",
                    "-f", str(ssh / "host_key")], check=True, capture_output=True, input=b"y\n")
    _write(ssh / "authorized_keys", authorized_key.strip() + "\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory

    address = loopback_address(address_base, rank)
    last_error = ""
    for _attempt in range(5):
        port = _free_port(address)
        config = root / "sshd_config"
        _write(config, _sshd_config(root, address, port, user))
        log = open(root / "sshd.log", "ab")
        process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=log, start_new_session=True)
        log.close()
        # Recorded before anything else can happen to us, so the node is findable even if the
        # engine never hears about it.
        _write(root / MARKER, json.dumps({"pid": process.pid, "started": processes.start_time(process.pid),
                                          "address": address, "port": port}))
        if _wait_listening(process, address, port):
            if lease_seconds:
                _write(root / LEASE, "")
                subprocess.Popen(["sh", "-c", WATCHDOG, "dstack-iac-lease", str(root), str(lease_seconds),
                                  str(process.pid)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
            host_key = (ssh / "host_key.pub").read_text().split()
            return {
                "address": address,
                "private_address": address,
                "port": port,
                "user": user,
                "directory": str(root),
                "working_dir": str(root / "workflow"),
                "pid": process.pid,
                "host_key": f"{host_key[0]} {host_key[1]}",
            }
        processes.terminate([process.pid])
        last_error = (root / "sshd.log").read_text(errors="replace")[-2000:]
    raise NodeStartError(f"sshd for node {rank} did not start: {last_error.strip() or 'no output'}")


def _wait_listening(process: subprocess.Popen, address: str, port: int) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.01)
    return False


def node_processes(root: Path) -> list[int]:
    """Every live process of the node: its sshd (from the marker), what runs through it, and
    anything else whose command line names the node's directory."""
    found = set(processes.mentioning(str(root)))
    try:
        marker = json.loads((root / MARKER).read_text())
        pid, started = int(marker["pid"]), marker.get("started")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pid, started = 0, None
    if processes.is_same_process(pid, started):
        found.add(pid)
    for pid in list(found):
        found.update(processes.descendants(pid))
    return sorted(found)


def stop_node(directory: str) -> None:
    """Stop the node's task, sshd and every process started through it; remove its directory."""
    root = Path(directory)
    task_pid_file = root / "task.pid"
    try:
        processes.terminate_group(int(task_pid_file.read_text().strip()))
    except (OSError, ValueError):
        pass
    processes.terminate(node_processes(root))
    shutil.rmtree(root, ignore_errors=True)
