"""SSH to a fleet's hosts (paramiko), for the fleet's and the runs' resources: connect with the
fleet's identity file (read from its path at connect time, never copied), through the jump host
when there is one, with the host keys pinned; run the host program (`remote.py`) there.

A host key is trusted on first use exactly once, when the fleet is created (the caller records
it and prints its fingerprint); every later connection rejects any other key. Every failure is a
`HostError` naming the host and what SSH said.

Runs in the provider process and in the CLI: standard library and paramiko only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
from paramiko.hostkeys import HostKeyEntry

from dstack_iac.backends.ssh import remote

CONNECT_TIMEOUT = 15.0
DEFAULT_PORT = 22
PROGRAM = Path(remote.__file__).read_text()  # sent to the host on each call: nothing is installed there
# The host program needs only the standard library: the system's python3 when there is one (it
# starts fastest, and no virtualenv or version manager of the user's stands in its way).
PYTHON = "if [ -x /usr/bin/python3 ]; then exec /usr/bin/python3 -; else exec python3 -; fi"


class HostError(Exception):
    """A host could not be reached or did not do what was asked; the message names the host."""


@dataclass(frozen=True)
class Target:
    """Where and how to log in. `host_key` ("type base64") is the pinned key; None only when
    the fleet is being created (trust on first use)."""

    label: str
    hostname: str
    port: int
    user: str
    identity_file: str
    host_key: str | None = None
    jump: Target | None = None

    @property
    def shown(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"

    def describe(self) -> str:
        return f"host {self.label} ({self.shown})"

    def as_props(self) -> dict[str, Any]:
        return {"label": self.label, "hostname": self.hostname, "port": self.port, "user": self.user,
                "identity_file": self.identity_file, "host_key": self.host_key,
                "jump": self.jump.as_props() if self.jump else None}

    @classmethod
    def from_props(cls, props: dict[str, Any]) -> Target:
        jump = props.get("jump")
        return cls(label=str(props["label"]), hostname=str(props["hostname"]), port=int(props["port"]),
                   user=str(props["user"]), identity_file=str(props["identity_file"]),
                   host_key=props.get("host_key") or None, jump=cls.from_props(jump) if jump else None)


def known_host_name(hostname: str, port: int) -> str:
    """How known_hosts (and paramiko) name a host: bare on port 22, [host]:port otherwise."""
    return hostname if port == DEFAULT_PORT else f"[{hostname}]:{port}"


def fingerprint(host_key: str) -> str:
    """OpenSSH's SHA256 fingerprint of a "type base64" key, as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(base64.b64decode(host_key.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_line(target: Target) -> str:
    return f"{known_host_name(target.hostname, target.port)} {target.host_key}"


def pin(client: paramiko.SSHClient, hostname: str, port: int, host_key: str) -> None:
    """Accept exactly `host_key` for the host; any other key is refused."""
    entry = HostKeyEntry.from_line(f"{known_host_name(hostname, port)} {host_key}")
    if entry is None or entry.key is None:
        raise HostError(f"the pinned host key of {hostname}:{port} cannot be read: {host_key[:40]}...")
    client.get_host_keys().add(known_host_name(hostname, port), entry.key.get_name(), entry.key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())


class _FirstUse(paramiko.MissingHostKeyPolicy):
    """Trust on first use: accept the key the host shows, and remember it for the record."""

    def __init__(self) -> None:
        self.key: paramiko.PKey | None = None

    def missing_host_key(self, client, hostname, key) -> None:
        self.key = key


def _explain(target: Target, exc: BaseException) -> str:
    if isinstance(exc, paramiko.BadHostKeyException):
        return (f"its host key changed: pinned {fingerprint(target.host_key or '')}, the host shows "
                f"{fingerprint(exc.key.get_name() + ' ' + exc.key.get_base64())}; if the host was reinstalled, "
                "delete and re-create the fleet (refusing to connect)")
    if isinstance(exc, paramiko.PasswordRequiredException):
        return f"the identity file {target.identity_file} is protected by a passphrase, which dstack-iac cannot enter"
    if isinstance(exc, paramiko.AuthenticationException):
        return f"authentication as {target.user} with {target.identity_file} failed ({exc})"
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return ("it did not show its pinned host key (it offers another kind of key now); if the host was "
                "reinstalled, delete and re-create the fleet (refusing to connect)")
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"the identity file {exc.filename} does not exist"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return "; ".join(dict.fromkeys(str(error) for error in exc.errors.values())) or str(exc)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer within {CONNECT_TIMEOUT:g}s"
    if isinstance(exc, socket.gaierror):
        return f"{target.hostname} cannot be resolved ({exc.strerror})"
    return str(exc).strip() or type(exc).__name__


@dataclass
class HostConnection:
    """An open SSH connection to a host (and to its jump host, when there is one); `seen`
    holds the host keys shown, by label, when connecting for the first time."""

    target: Target
    client: paramiko.SSHClient
    jump_client: paramiko.SSHClient | None = None
    seen: dict[str, str] = field(default_factory=dict)

    def call(self, command: str, arguments: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
        """Run the host program's `command` there and return its JSON answer."""
        text = PROGRAM + f"\nentry({command!r}, {json.dumps(arguments)!r})\n"
        try:
            stdin, stdout, stderr = self.client.exec_command(PYTHON, timeout=timeout)
            stdin.write(text)
            stdin.channel.shutdown_write()
            out = stdout.read().decode(errors="replace")
            err = stderr.read().decode(errors="replace")
            status = stdout.channel.recv_exit_status()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostError(f"{self.target.describe()}: the connection failed during {command}: "
                            f"{_explain(self.target, exc)}") from None
        if status == 127 or "python3: not found" in err or "python3: command not found" in err:
            raise HostError(f"{self.target.describe()}: python3 is not installed (dstack-iac needs python3, 3.6 or "
                            "newer, on every host)")
        lines = out.strip().splitlines()
        if status != 0 or not lines:
            detail = err.strip().splitlines()[-1] if err.strip() else f"exit status {status}"
            raise HostError(f"{self.target.describe()}: {command} failed: {detail}")
        return json.loads(lines[-1])

    def close(self) -> None:
        self.client.close()
        if self.jump_client is not None:
            self.jump_client.close()


def _open(target: Target, *, first_use: bool, sock: Any = None) -> tuple[paramiko.SSHClient, str | None]:
    client = paramiko.SSHClient()
    policy = None
    if target.host_key:
        pin(client, target.hostname, target.port, target.host_key)
    elif first_use:
        policy = _FirstUse()
        client.set_missing_host_key_policy(policy)
    else:
        raise HostError(f"{target.describe()}: no host key is pinned for it (re-create the fleet)")
    try:
        # The identity file is read here, from its path, for this connection only.
        client.connect(target.hostname, port=target.port, username=target.user, key_filename=target.identity_file,
                       sock=sock, timeout=CONNECT_TIMEOUT, banner_timeout=CONNECT_TIMEOUT,
                       auth_timeout=CONNECT_TIMEOUT, allow_agent=False, look_for_keys=False)
    except Exception as exc:  # noqa: BLE001 - every SSH failure becomes one message naming the host
        client.close()
        raise HostError(f"{target.describe()}: cannot connect: {_explain(target, exc)}") from None
    shown = f"{policy.key.get_name()} {policy.key.get_base64()}" if policy and policy.key else target.host_key
    return client, shown


def jump_channel(jump_client: paramiko.SSHClient, target: Target) -> paramiko.Channel:
    """A direct-tcpip channel through the jump host to the target's SSH port (as `ssh -J`)."""
    try:
        return jump_client.get_transport().open_channel("direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0))
    except (paramiko.SSHException, OSError) as exc:
        raise HostError(f"{target.describe()}: the jump host {target.jump.shown} cannot reach it: "
                        f"{_explain(target, exc)}") from None


def connect(target: Target, *, first_use: bool = False) -> HostConnection:
    """Connect to `target` (through its jump host), host keys pinned; with `first_use`, a host
    without a pinned key is accepted and its key reported in `seen`."""
    jump_client = None
    seen: dict[str, str] = {}
    sock = None
    if target.jump is not None:
        try:
            jump_client, jump_key = _open(target.jump, first_use=first_use)
        except HostError as exc:
            raise HostError(f"{target.describe()}: through the jump host: {exc}") from None
        seen["jump"] = jump_key or ""
        try:
            sock = jump_channel(jump_client, target)
        except HostError:
            jump_client.close()
            raise
    try:
        client, key = _open(target, first_use=first_use, sock=sock)
    except HostError:
        if jump_client is not None:
            jump_client.close()
        raise
    seen["host"] = key or ""
    return HostConnection(target, client, jump_client, seen)
