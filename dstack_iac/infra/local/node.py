"""Start and stop one local node: an sshd on its own loopback address, with its own host key,
authorized key, root directory and log, all under the run's directory in the state dir."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

from dstack_iac.infra.local import processes

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd")
START_TIMEOUT = 15.0


class NodeStartError(RuntimeError):
    pass


def find_sshd() -> str | None:
    return shutil.which("sshd") or next((p for p in SSHD_CANDIDATES if os.access(p, os.X_OK)), None)


def _loopback_address(run_name: str, rank: int) -> str:
    # Nodes of one run get consecutive addresses; runs start at a random base so that two
    # runs rarely share an address (the port keeps them apart when they do).
    base = random.Random(f"{run_name}-{os.getpid()}-{time.time_ns()}").randint(2, 200)
    return f"127.0.0.{base + rank}"


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def _sshd_config(node_dir: Path, address: str, port: int, user: str) -> str:
    ssh = node_dir / "ssh"
    return "\n".join([
        f"ListenAddress {address}:{port}",
        f"HostKey {ssh / 'host_key'}",
        f"AuthorizedKeysFile {ssh / 'authorized_keys'}",
        f"PidFile {node_dir / 'sshd.pid'}",
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


def start_node(run_name: str, rank: int, node_dir: str, user: str, authorized_key: str) -> dict:
    sshd = find_sshd()
    if sshd is None:
        raise NodeStartError("sshd is not installed: run scripts/setup or install openssh-server")
    root = Path(node_dir)
    ssh = root / "ssh"
    ssh.mkdir(parents=True, exist_ok=True, mode=0o700)
    (root / "workflow").mkdir(exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"dstack-iac-{run_name}-{rank}",
         "-f", str(ssh / "host_key")],
        check=True, capture_output=True,
    )
    (ssh / "authorized_keys").write_text(authorized_key.strip() + "\n")
    (ssh / "authorized_keys").chmod(0o600)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory

    last_error = ""
    for _attempt in range(5):
        address = _loopback_address(run_name, rank)
        port = _free_port(address)
        config = root / "sshd_config"
        config.write_text(_sshd_config(root, address, port, user))
        log = open(root / "sshd.log", "ab")
        process = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
        log.close()
        if _wait_listening(process, address, port):
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
            time.sleep(0.02)
    return False


def stop_node(directory: str, pid: int | None) -> None:
    """Stop the node's task, sshd and every process started through it; remove its directory."""
    root = Path(directory)
    task_pid_file = root / "task.pid"
    if task_pid_file.exists():
        try:
            processes.terminate_group(int(task_pid_file.read_text().strip()))
        except ValueError:
            pass
    if pid and processes.alive(pid) and str(root / "sshd_config") in processes.command_line(pid):
        # Kill the sessions first (children of the listener), then the listener.
        processes.terminate(processes.descendants(pid))
        processes.terminate([pid])
    shutil.rmtree(root, ignore_errors=True)
