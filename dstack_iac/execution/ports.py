"""Forwarding the task's ports from node 0 to this machine, over the run's SSH connection.

Each local connection opens its own SSH channel. A connection made before the task's server is
listening fails alone (it is closed) and the next one tries again: users open the URL early.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading

import paramiko

from dstack_iac.config.models import PortMapping
from dstack_iac.errors import BadInput

BUFFER = 64 * 1024


def free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Tunnel:
    """127.0.0.1:local_port on this machine, piped to remote_host:remote_port as seen by the node."""

    def __init__(self, transport: paramiko.Transport, local_port: int, remote_host: str, remote_port: int):
        self.transport = transport
        self.remote = (remote_host, remote_port)
        try:
            self.listener = socket.create_server(("127.0.0.1", local_port))
        except OSError as exc:
            raise BadInput(f"local port {local_port} cannot be used on this machine ({exc.strerror}): map the task's "
                           f"port {remote_port} elsewhere, e.g. -p {local_port + 1}:{remote_port}") from None
        self.local_port = self.listener.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name=f"forward-{self.local_port}")
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, peer = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client, peer), daemon=True).start()

    def _pipe(self, client: socket.socket, peer) -> None:
        try:
            channel = self.transport.open_channel("direct-tcpip", self.remote, peer, timeout=10)
        except (paramiko.SSHException, OSError):
            client.close()  # nothing listens there yet: this connection fails, the tunnel stays
            return
        with contextlib.closing(client), contextlib.closing(channel):
            while not self._closed.is_set():
                ready, _, _ = select.select([client, channel], [], [], 0.5)
                if client in ready:
                    data = client.recv(BUFFER)
                    if not data:
                        return
                    channel.sendall(data)
                if channel in ready:
                    data = channel.recv(BUFFER)
                    if not data:
                        return
                    client.sendall(data)

    def close(self) -> None:
        self._closed.set()
        self.listener.close()


@contextlib.contextmanager
def forward_ports(session, ports: list[PortMapping]):
    """Yields [(local_port, remote_port)] while the tunnels are open."""
    tunnels = []
    if not ports:
        yield []
        return
    try:
        transport = session.connection.transport
        for mapping in ports:
            tunnels.append(Tunnel(transport, mapping.local_port or 0, session.endpoint.private_address,
                                   mapping.container_port))
        yield [(tunnel.local_port, tunnel.remote[1]) for tunnel in tunnels]
    finally:
        for tunnel in tunnels:
            tunnel.close()
