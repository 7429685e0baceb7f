"""SSH sessions to a run's nodes (Fabric), with host keys pinned from the stack's outputs."""

from __future__ import annotations

import io
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import fabric
import paramiko

from dstack_iac.execution.mounts import namespaced_command
from dstack_iac.infra.program import NodeEndpoint

CONNECT_TIMEOUT = 20
BOOT_TIMEOUT = 900  # cloud nodes: boot, first-boot script (Docker, image pull)


def write_known_hosts(path: Path, nodes: list[NodeEndpoint]) -> None:
    lines = [f"[{node.address}]:{node.port} {node.host_key}" for node in nodes]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


class LineWriter:
    """A file-like sink for Invoke's streams: whole lines, prefixed, to `emit` as they arrive."""

    def __init__(self, prefix: str, emit: Callable[[str], None]):
        self.prefix = prefix
        self.emit = emit
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self.emit(self.prefix + line.rstrip("\r"))
        return len(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._partial:
            self.emit(self.prefix + self._partial)
            self._partial = ""


class NodeLost(ConnectionError):
    """The SSH session ended without an exit status: the node (or its sshd) went away."""


class NodeSession:
    """One node: upload, run the task script, stop it. `node_dir` holds the task's pid file."""

    def __init__(self, endpoint: NodeEndpoint, key_path: Path, known_hosts: Path):
        self.endpoint = endpoint
        self.key_path = key_path
        self.known_hosts = known_hosts
        self.connection = self._connect()
        self.node_dir = str(Path(endpoint.working_dir).parent)
        self._stopped = threading.Event()

    @classmethod
    def when_ready(cls, endpoint: NodeEndpoint, key_path: Path, known_hosts: Path,
                   timeout: float = BOOT_TIMEOUT) -> "NodeSession":
        """Connect once the node answers SSH and its first-boot script has finished."""
        from dstack_iac.infra.cloud.node_setup import READY_MARKER

        deadline = time.monotonic() + timeout
        while True:
            try:
                session = cls(endpoint, key_path, known_hosts)
                ready = session.connection.run(f"test -f {READY_MARKER}", hide=True, warn=True).ok
                session.close()
                if ready:
                    # A fresh login: group changes made at boot (docker) apply to it.
                    return cls(endpoint, key_path, known_hosts)
            except (paramiko.SSHException, OSError, EOFError):
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {endpoint.rank} ({endpoint.address}) was not ready after {timeout:.0f}s")
            time.sleep(5)

    def _connect(self) -> fabric.Connection:
        connection = fabric.Connection(
            host=self.endpoint.address, user=self.endpoint.user, port=self.endpoint.port,
            connect_timeout=CONNECT_TIMEOUT,
            config=fabric.Config(overrides={"load_ssh_configs": False, "run": {"in_stream": False}}),
            connect_kwargs={"key_filename": [str(self.key_path)], "allow_agent": False, "look_for_keys": False},
        )
        # Fabric trusts unknown hosts by default; a run knows its nodes' host keys, so reject others.
        connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        connection.client.load_host_keys(str(self.known_hosts))
        connection.open()
        return connection

    def upload(self, archive: bytes) -> None:
        remote = f"{self.node_dir}/workdir.tar.gz"
        self.connection.put(io.BytesIO(archive), remote)
        self.connection.run(
            f"mkdir -p {shlex.quote(self.endpoint.working_dir)} && "
            f"tar -xzf {shlex.quote(remote)} -C {shlex.quote(self.endpoint.working_dir)} && rm -f {shlex.quote(remote)}",
            hide=True,
        )

    def run_script(self, script: str, emit: Callable[[str], None], prefix: str,
                   mounts: Sequence[tuple[str, str]] = ()) -> int:
        script_path = f"{self.node_dir}/task.sh"
        self.connection.put(io.BytesIO(script.encode()), script_path)
        pid_file = shlex.quote(f"{self.node_dir}/task.pid")
        # The login shell is a session leader: its pid is the process group that `stop` kills.
        command = f"echo $$ > {pid_file}; {namespaced_command(script_path, mounts)}"
        out, err = LineWriter(prefix, emit), LineWriter(prefix, emit)
        try:
            result = self.connection.run(command, warn=True, hide=False, out_stream=out, err_stream=err, pty=False)
        finally:
            out.close()
            err.close()
        # No exit status: killed by a signal (the connection is fine), or the node went away.
        if (result.exited is None or result.exited < 0) and not self.connection.is_connected:
            raise NodeLost(f"node {self.endpoint.rank} ({self.endpoint.address}) stopped answering: its SSH session "
                           "ended without an exit status")
        return result.exited if result.exited is not None else -1

    @property
    def stopped(self) -> bool:
        """Whether `stop` was called: the task ending then is our doing, not a failure of its own."""
        return self._stopped.is_set()

    def stop(self) -> None:
        """Stop the task's whole process group, through a connection of its own."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        pid_file = shlex.quote(f"{self.node_dir}/task.pid")
        command = (
            f"if [ -f {pid_file} ]; then pg=$(cat {pid_file}); kill -TERM -- -$pg 2>/dev/null; "
            f"for i in $(seq 30); do kill -0 -- -$pg 2>/dev/null || exit 0; sleep 0.1; done; "
            f"kill -KILL -- -$pg 2>/dev/null; fi; true"
        )
        try:
            other = self._connect()
            try:
                other.run(command, hide=True, warn=True)
            finally:
                other.close()
        except Exception:  # noqa: BLE001 - the node may already be gone; teardown follows anyway
            pass

    def close(self) -> None:
        self.connection.close()
