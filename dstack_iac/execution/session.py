"""An SSH session to one node of a run (Fabric), with its host key pinned from the stack's
outputs: upload the working directory, run the node script, stop it, renew the run's lease."""

from __future__ import annotations

import base64
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import fabric
import paramiko

from dstack_iac.errors import NodeLost
from dstack_iac.execution.mounts import namespaced_command
from dstack_iac.execution.script import COMMANDS_STARTED
from dstack_iac.model.nodes import NodeEndpoint
from dstack_iac.model.plan import NodeRuntime

CONNECT_TIMEOUT = 20
STOPPED_BEFORE_START = 143  # what a task stopped by SIGTERM exits with
SESSION_ERRORS = (paramiko.SSHException, OSError, EOFError)


def pin_host_key(client: paramiko.SSHClient, endpoint: NodeEndpoint) -> None:
    """Accept exactly the host key the stack reported for this node (no file needed)."""
    if not endpoint.host_key.strip():
        return
    key_type, _, rest = endpoint.host_key.strip().partition(" ")
    key = paramiko.PKey.from_type_string(key_type, base64.b64decode(rest.split()[0]))
    client.get_host_keys().add(f"[{endpoint.address}]:{endpoint.port}" if endpoint.port != 22 else endpoint.address,
                               key_type, key)


def write_known_hosts(path: Path, nodes: Sequence[NodeEndpoint]) -> None:
    from dstack_iac.paths import write_private

    write_private(path, "".join(f"[{node.address}]:{node.port} {node.host_key}\n" for node in nodes))


class LineWriter:
    """A file-like sink for Invoke's streams: whole lines, prefixed, to `emit` as they arrive.
    A line that is one of `signals` is not shown: its callback is called instead."""

    def __init__(self, prefix: str, emit: Callable[[str], None],
                 signals: dict[str, Callable[[], None]] | None = None):
        self.prefix = prefix
        self.emit = emit
        self.signals = signals or {}
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            line = line.rstrip("\r")
            if line in self.signals:
                self.signals[line]()
            else:
                self.emit(self.prefix + line)
        return len(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._partial:
            self.emit(self.prefix + self._partial)
            self._partial = ""


class NodeSession:
    """One node. `node_dir` holds what the run keeps there (pid file, script, lease)."""

    def __init__(self, endpoint: NodeEndpoint, key_path: Path, known_hosts: Path | None = None):
        self.endpoint = endpoint
        self.key_path = key_path
        self.known_hosts = known_hosts
        self.node_dir = endpoint.node_dir
        self._stopped = threading.Event()
        self._lock = threading.Lock()  # one command at a time on the shared connection's extras
        self.connection = self._connect()

    @classmethod
    def when_ready(cls, endpoint: NodeEndpoint, key_path: Path, known_hosts: Path, marker: str,
                   timeout: float, poll: float = 5.0) -> NodeSession:
        """Connect once the node answers SSH and `marker` exists (its first-boot script finished)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                session = cls(endpoint, key_path, known_hosts)
                ready = session.connection.run(f"test -f {shlex.quote(marker)}", hide=True, warn=True).ok
                session.close()
                if ready:
                    # A fresh login: group changes made at boot (docker) apply to it.
                    return cls(endpoint, key_path, known_hosts)
            except SESSION_ERRORS:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {endpoint.rank} ({endpoint.address}) was not ready after {timeout:.0f}s")
            time.sleep(poll)

    def _connect(self) -> fabric.Connection:
        connection = fabric.Connection(
            host=self.endpoint.address, user=self.endpoint.user, port=self.endpoint.port,
            connect_timeout=CONNECT_TIMEOUT,
            config=fabric.Config(overrides={"load_ssh_configs": False, "run": {"in_stream": False}}),
            connect_kwargs={"key_filename": [str(self.key_path)], "allow_agent": False, "look_for_keys": False},
        )
        # Fabric trusts unknown hosts by default; a run knows its nodes' host keys, so reject others.
        connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        pin_host_key(connection.client, self.endpoint)
        if self.known_hosts is not None and self.known_hosts.is_file():
            connection.client.load_host_keys(str(self.known_hosts))
        connection.open()
        return connection

    def _feed(self, command: str, data: bytes = b"") -> str:
        """Run `command` on its own channel with `data` as its stdin: one round trip, no SFTP.
        Returns its output; raises naming the command (its first step) when it fails."""
        channel = self.connection.transport.open_session()
        try:
            channel.exec_command(command)
            channel.sendall(data)
            channel.shutdown_write()
            errors, output = b"", b""
            while not channel.exit_status_ready() or channel.recv_stderr_ready() or channel.recv_ready():
                if channel.recv_stderr_ready():
                    errors += channel.recv_stderr(65536)
                elif channel.recv_ready():
                    output += channel.recv(65536)
                else:
                    channel.status_event.wait(0.05)
            status = channel.recv_exit_status()
        finally:
            channel.close()
        if status != 0:
            reason = errors.decode(errors="replace").strip()
            if reason.startswith(("repos:", "files:")):
                raise OSError(f"node {self.endpoint.rank}: {reason}")
            raise OSError(f"node {self.endpoint.rank}: `{command.split(' &&')[0]}` failed ({status}): {reason}")
        return output.decode(errors="replace")

    def command_output(self, command: str) -> str:
        return self._feed(command)

    def extract(self, archive: bytes, directory: str) -> None:
        """Unpack a tar.gz into `directory` on the node (`$HOME/...` is the user's home there)."""
        where = '"$HOME"' + shlex.quote(directory[5:]) if directory.startswith("$HOME") else shlex.quote(directory)
        self._feed(f"mkdir -p {where} && tar -xzf - -C {where}", archive)

    def run_with_secret(self, command: str, variable: str, username: str | None, password) -> None:
        """Run `command` with `$variable` naming a private askpass script that answers git with
        the credentials (written through stdin, removed after): never in a command line."""
        if password is None:
            self._feed(command)
            return
        script = f"{self.node_dir}/askpass"
        body = (f"#!/bin/sh\ncase \"$1\" in Username*) printf '%s\\n' {shlex.quote(username or 'git')};; "
                f"*) printf '%s\\n' {shlex.quote(password.get_secret_value())};; esac\n")
        self.put_private(body.encode(), script, 0o700)
        try:
            self._feed(f"{variable}={shlex.quote(script)} && export {variable} && {command}")
        finally:
            self._feed(f"rm -f {shlex.quote(script)}")

    def put_private(self, data: bytes, remote: str, mode: int = 0o600) -> None:
        """Write a file on the node readable by the run's user only (it may hold secrets)."""
        path = shlex.quote(remote)
        self._feed(f"umask 077 && cat > {path} && chmod {mode:o} {path}", data)

    def upload(self, archive: bytes) -> None:
        self.extract(archive, self.endpoint.working_dir)

    def run_script(self, script: str, emit: Callable[[str], None], prefix: str,
                   runtime: NodeRuntime | None = None, on_start: Callable[[], None] | None = None) -> int:
        script_path = f"{self.node_dir}/task.sh"
        self.put_private(script.encode(), script_path, 0o700)
        pid_file, stop_file = (shlex.quote(f"{self.node_dir}/{name}") for name in ("task.pid", "task.stop"))
        runtime = runtime or NodeRuntime()
        namespaced = namespaced_command(script_path, runtime.namespace_mounts, private_roots=runtime.private_roots,
                                        kept_dirs=runtime.kept_dirs, scratch=f"{self.node_dir}/private")
        # The login shell is a session leader: its pid is the process group that `stop` kills.
        # `stop` leaves its marker before it reads the pid file: a stop that came before the
        # pid was written is seen here, one that came after finds the pid.
        command = f"echo $$ > {pid_file}; [ -e {stop_file} ] && exit {STOPPED_BEFORE_START}; {namespaced}"
        if self._stopped.is_set():
            return STOPPED_BEFORE_START
        started = threading.Event()

        def commands_started() -> None:
            # Once: when the script says its commands start, or at the latest when it ended.
            if not started.is_set():
                started.set()
                if on_start is not None:
                    on_start()

        out = LineWriter(prefix, emit, {COMMANDS_STARTED: commands_started})
        err = LineWriter(prefix, emit)
        try:
            result = self.connection.run(command, warn=True, hide=False, out_stream=out, err_stream=err, pty=False)
        finally:
            out.close()
            err.close()
            commands_started()
        # No exit status: killed by a signal (the connection is fine), or the node went away.
        if (result.exited is None or result.exited < 0) and not self.connection.is_connected:
            raise NodeLost(f"node {self.endpoint.rank} ({self.endpoint.address}) stopped answering: its SSH session "
                           "ended without an exit status")
        return result.exited if result.exited is not None else -1

    def run(self, command: str, timeout: float | None = None) -> bool:
        """A short command on its own channel of the run's connection (no new port, no new login)."""
        with self._lock:
            return self.connection.run(command, hide=True, warn=True, timeout=timeout).ok

    @property
    def stopped(self) -> bool:
        """Whether `stop` was called: the task ending then is our doing, not a failure of its own."""
        return self._stopped.is_set()

    def stop(self, grace: float | None = 3.0) -> None:
        """Stop the task's whole process group: SIGTERM, then SIGKILL after `grace` seconds (never,
        with None: `stop_duration: off`), through a connection of its own (the main one is busy
        streaming the task's output)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        pid_file, stop_file = (shlex.quote(f"{self.node_dir}/{name}") for name in ("task.pid", "task.stop"))
        wait = "while kill -0 -$pg 2>/dev/null; do sleep 0.1; done; exit 0" if grace is None else \
            f"for i in $(seq {max(1, int(grace * 10))}); do kill -0 -$pg 2>/dev/null || exit 0; sleep 0.1; done"
        command = (
            f": > {stop_file}; if [ -f {pid_file} ]; then pg=$(cat {pid_file}); kill -TERM -$pg 2>/dev/null; "
            f"{wait}; kill -KILL -$pg 2>/dev/null; fi; true"
        )
        try:
            other = self._connect()
            try:
                other.run(command, hide=True, warn=True, timeout=None if grace is None else grace + 30)
            finally:
                other.close()
        except Exception:  # noqa: BLE001 - the node may already be gone; teardown follows anyway
            pass

    def close(self) -> None:
        self.connection.close()
