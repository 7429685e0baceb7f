""""Existing hosts" for the ssh backend's tests: each is a real sshd of this machine on its own
loopback address (127.42.x.y), with its own host key, its own authorized keys file (holding the
user's own lines and the fleet's key, never the runs' keys) and its own dstack-iac host dir, both
given to the host's sessions through sshd's SetEnv: nothing outside the test's directory (and
nothing of the real user's ~/.ssh) is ever read or written. Stopped by pid.
"""

from __future__ import annotations

import getpass
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from dstack_iac.paths import cache_dir, wheelhouse_dir
from dstack_iac.state import processes

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
# What the host's users already have in their authorized keys file. It ends without a newline,
# so adding a line needs one: the file must still come back byte-identical.
USER_LINES = (b"# keys of the host's own users: dstack-iac must never touch them\n"
              b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOCuAmM9Tk6yjZ9QAPcqS6VYg4sKeP4I1jRZqLnOd5x3 alice@laptop")
# A stand-in for nvidia-smi: two A100s, in nvidia-smi's CSV (what the inventory asks for).
FAKE_NVIDIA_SMI = """#!/bin/sh
echo "0, NVIDIA A100-SXM4-80GB, 81920, 8.0"
echo "1, NVIDIA A100-SXM4-80GB, 81920, 8.0"
"""


def other_login() -> str | None:
    """An account of this machine, not the test's own, that can log in (a shell of its own), for
    a host whose user differs; None when there is none (or the tests are not root, so sshd
    cannot log anyone else in)."""
    import pwd

    if os.geteuid() != 0:
        return None
    for account in pwd.getpwall():
        if account.pw_uid >= 1000 and account.pw_name != getpass.getuser() and \
                account.pw_shell.endswith(("/bash", "/sh")) and os.access(account.pw_shell, os.X_OK):
            return account.pw_name
    return None


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def make_key(path: Path, comment: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class ExistingHost:
    name: str
    root: Path
    address: str
    authorized_key: str  # the fleet's public key, which the host's user authorized long ago
    gpus: bool = False
    log_level: str = "ERROR"  # DEBUG1 shows the tunnels a jump host opens
    login: str | None = None  # another account of this machine to log in as (else the test's own)
    port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def host_dir(self) -> Path:
        return self.root / "dstack-iac"

    @property
    def authorized_keys(self) -> Path:
        return self.root / "ssh" / "authorized_keys"

    @property
    def user(self) -> str:
        return self.login or getpass.getuser()

    def prepare(self) -> None:
        (self.root / "ssh").mkdir(parents=True, exist_ok=True)
        make_key(self.root / "host_key", f"host-{self.name}")
        self.authorized_keys.write_bytes(USER_LINES.replace(b"\nssh-", b"\n" + self.authorized_key.encode()
                                                            + b" fleet-key\nssh-"))
        self.authorized_keys.chmod(0o640)
        self.host_dir.mkdir()
        if self.login is None:
            # Hosts whose owner shares caches between runs: the wheels and seed venvs the test
            # session's local runs share (torch is downloaded once, not once per host).
            for name, shared in (("wheels", wheelhouse_dir()), ("venv-seeds", cache_dir() / "venv-seeds")):
                shared.mkdir(parents=True, exist_ok=True)
                (self.host_dir / name).symlink_to(shared)
        else:
            # The other account owns its dstack-iac dir and its ~/.ssh stand-in, as on a real host.
            import pwd

            account = pwd.getpwnam(self.login)
            for path in (self.root, self.root / "ssh", self.authorized_keys, self.host_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        env = [f"DSTACK_IAC_HOST_DIR={self.host_dir}", f"DSTACK_IAC_AUTHORIZED_KEYS={self.authorized_keys}"]
        if self.gpus:
            bin_dir = self.root / "bin"
            bin_dir.mkdir()
            (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
            (bin_dir / "nvidia-smi").chmod(0o755)
            env.append(f"PATH={bin_dir}:/usr/local/bin:/usr/bin:/bin")
        self.port = free_port(self.address)
        (self.root / "sshd_config").write_text("\n".join([
            f"ListenAddress {self.address}:{self.port}",
            f"HostKey {self.root / 'host_key'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"PidFile {self.root / 'sshd.pid'}",
            f"AllowUsers {self.user}",
            "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            # Another account of this machine may be locked (no password, `!`), which sshd refuses
            # without PAM; PAM's account check lets a key in.
            "PermitRootLogin prohibit-password", f"UsePAM {'yes' if self.login else 'no'}", "StrictModes no", "AllowTcpForwarding yes",
            "X11Forwarding no", "PrintMotd no", "MaxSessions 64", "MaxStartups 64", f"LogLevel {self.log_level}",
            "Subsystem sftp internal-sftp",
            "SetEnv " + " ".join(env),
            "",
        ]))

    def start(self) -> None:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        log = open(self.root / "sshd.log", "ab")
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.address, self.port), timeout=0.5):
                    return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.02)
        raise RuntimeError(f"sshd of {self.name} did not start: {(self.root / 'sshd.log').read_text()[-2000:]}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """The host goes away at once: its sshd and every session through it, SIGKILL. What the
        host runs outside its sessions (a run's watchdog) lives on, as on a host cut off."""
        if self.process is None:
            return
        pids = [self.process.pid, *processes.descendants(self.process.pid)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        processes.terminate([self.process.pid, *processes.descendants(self.process.pid)])
        self.process.wait(timeout=10)
        self.process = None

    # --- what the tests check -------------------------------------------------------------------

    def run_dirs(self) -> list[Path]:
        runs = self.host_dir / "runs"
        return sorted(runs.iterdir()) if runs.is_dir() else []

    def locks(self) -> list[str]:
        """The locks the host's leases hold (each lists its own in its lease.json)."""
        return sorted(lock for lease in (self.host_dir / "runs").glob("*/lease.json")
                      for lock in json.loads(lease.read_text()).get("locks", []))

    def cgroups(self) -> list[str]:
        """The leases' cgroups (remote.py make_cgroup) still on this machine."""
        from dstack_iac.backends.ssh.remote import CGROUP_PREFIX, _cgroup2_root

        root = _cgroup2_root()
        return sorted(str(p) for p in Path(root).rglob(f"{CGROUP_PREFIX}*")) if root else []

    def run_processes(self) -> list[int]:
        return processes.mentioning(str(self.host_dir / "runs"))

    def log(self) -> str:
        return (self.root / "sshd.log").read_text(errors="replace")


# What a host has of its own that changes without dstack-iac: sshd's log and pid file, and its
# host key (a test reinstalls it).
OWN_FILES = {"sshd.log", "sshd.pid", "host_key", "host_key.pub"}


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under a host's root (its dstack-iac dir, its authorized keys dir, ...), links
    not followed: (kind, mode, size or link target). A shared cache behind a link is the host
    owner's: its contents are not the host dir's."""
    found = {}
    for current, directories, files in os.walk(root):
        for name in directories + files:
            path = Path(current) / name
            relative = str(path.relative_to(root))
            if relative in OWN_FILES:
                continue
            info = path.lstat()
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            found[relative] = (kind, info.st_mode & 0o7777,
                               os.readlink(path) if kind == "link" else info.st_size if kind == "file" else None)
    return found


def _differences(before: dict, after: dict) -> dict[str, list]:
    return {"added": sorted(set(after) - set(before)), "removed": sorted(set(before) - set(after)),
            "changed": sorted(k for k in set(before) & set(after) if before[k] != after[k])}


class Hosts:
    """A set of existing hosts, and the fleet key their users authorized."""

    def __init__(self, root: Path, count: int, gpus: tuple[int, ...] = (), verbose: tuple[int, ...] = (),
                 logins: dict[int, str] | None = None):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.key = root / "fleet_key"
        public = make_key(self.key, "fleet-user")
        base = f"127.42.{random.randint(0, 255)}"
        self.hosts = [ExistingHost(f"box-{i + 1}", root / f"box-{i + 1}", f"{base}.{10 + i}", public,
                                   gpus=i in gpus, log_level="DEBUG1" if i in verbose else "ERROR",
                                   login=(logins or {}).get(i))
                      for i in range(count)]
        for host in self.hosts:
            host.prepare()
            host.start()
        self.originals = {host.name: host.authorized_keys.read_bytes() for host in self.hosts}
        self.trees = {host.name: snapshot(host.root) for host in self.hosts}

    def __getitem__(self, index: int) -> ExistingHost:
        return self.hosts[index]

    def fleet_file(self, directory: Path, name: str, hosts: list[ExistingHost] | None = None,
                   extra: str = "", host_extra: str = "") -> Path:
        chosen = hosts if hosts is not None else self.hosts
        lines = ["type: fleet", f"name: {name}", "ssh_config:", f"  user: {chosen[0].user}",
                 f"  identity_file: {self.key}", "  hosts:"]
        for host in chosen:
            lines += [f"    - hostname: {host.address}", f"      port: {host.port}"]
            if host.user != chosen[0].user:
                lines.append(f"      user: {host.user}")
            lines += [f"      {line}" for line in host_extra.splitlines() if line]
        path = directory / f"{name}.dstack.yml"
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n" + extra)
        return path

    def assert_untouched(self) -> None:
        """After a run: the authorized keys files byte-identical (mode too), the host's dstack-iac
        dir and its ~/.ssh stand-in exactly as they were (every file and directory, its type,
        mode, size and link target), no process or cgroup of a run, every host's sshd running."""
        deadline = time.monotonic() + 10
        for host in self.hosts:
            while host.run_processes() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert host.run_processes() == [], f"{host.name}: processes of a run remain: {host.run_processes()}"
            assert host.authorized_keys.read_bytes() == self.originals[host.name], host.name
            assert host.authorized_keys.stat().st_mode & 0o777 == 0o640, host.name
            assert host.run_dirs() == [], f"{host.name}: {host.run_dirs()}"
            assert host.locks() == [], f"{host.name}: locks {host.locks()}"
            assert host.alive(), f"{host.name}: its sshd is gone"
            now = snapshot(host.root)
            assert now == self.trees[host.name], f"{host.name}: changed {_differences(self.trees[host.name], now)}"
        left = self.hosts[0].cgroups() if self.hosts else []
        assert left == [], f"cgroups of runs remain: {left}"

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()
