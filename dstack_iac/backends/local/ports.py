"""Ports of a local run: its nodes share this machine's network.

An app that listens on all addresses (`python -m http.server 8000`, gradio's default) already
serves http://127.0.0.1:8000 itself, and a forward holding 127.0.0.1:8000 would make it fail with
"Address already in use". So a port mapped to itself is not bound up front: it is watched, and
when the app listens, either it serves 127.0.0.1 itself (nothing to do) or it listens on its
node's own address only, and the tunnel is opened then. Other mappings are tunnelled as on any
backend.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from dstack_iac.config.models import PortMapping
from dstack_iac.errors import BadInput
from dstack_iac.execution.ports import Tunnel, forward_ports
from dstack_iac.state import processes

LISTEN = "0A"
SERVES_THIS_MACHINE = {"0.0.0.0", "127.0.0.1", "::", "::1"}  # reachable at 127.0.0.1 (or localhost)


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # /proc/net/tcp6 writes each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped or address)


def _listening(port: int) -> list[list[str]]:
    """The rows of /proc/net/tcp and tcp6 of the sockets listening on `port` (TCP)."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == LISTEN and int(fields[1].partition(":")[2], 16) == port:
                rows.append(fields)
    return rows


def listening_addresses(port: int) -> set[str]:
    """The addresses this machine listens on at `port` (TCP)."""
    return {_address(fields[1].partition(":")[0]) for fields in _listening(port)}


def listening_inodes(port: int) -> set[int]:
    """The socket inodes listening on `port` (TCP) on this machine."""
    return {int(fields[9]) for fields in _listening(port)}


def served_by_node(port: int, node_dir: str) -> bool:
    """Whether what listens on `port` is a process of the node (its environment names the node's
    directory): the run's own app, as `attach` finds it while the run goes on."""
    inodes = {f"socket:[{inode}]" for inode in listening_inodes(port)}
    if not inodes:
        return False
    for pid in processes.mentioning(node_dir):
        try:
            descriptors = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        if descriptors & inodes:
            return True
    return False


class _Watched:
    """A port mapped to itself: a tunnel once the app turns out to listen on its node only."""

    def __init__(self, session, port: int):
        self.session = session
        self.port = port
        self.tunnel: Tunnel | None = None
        self._stop = threading.Event()
        taken = listening_addresses(port) & SERVES_THIS_MACHINE
        if taken and not served_by_node(port, session.node_dir):
            raise BadInput(f"port {port} is already in use on this machine ({', '.join(sorted(taken))}): map the "
                           f"task's port elsewhere, e.g. -p {port + 1}:{port}")
        self._thread = threading.Thread(target=self._watch, daemon=True, name=f"watch-{port}")
        self._thread.start()

    def _watch(self) -> None:
        node = self.session.endpoint.private_address
        while not self._stop.wait(0.1):
            addresses = listening_addresses(self.port)
            if addresses & SERVES_THIS_MACHINE:
                return  # the app serves 127.0.0.1 itself
            if node in addresses:
                with contextlib.suppress(BadInput):
                    self.tunnel = Tunnel(self.session.connection.transport, self.port, node, self.port)
                return

    def close(self) -> None:
        self._stop.set()
        if self.tunnel is not None:
            self.tunnel.close()


@contextlib.contextmanager
def local_forward_ports(session, ports: Sequence[PortMapping]) -> Iterator[list[tuple[int, int]]]:
    itself = [m for m in ports if m.local_port == m.container_port]
    elsewhere = [m for m in ports if m.local_port != m.container_port]
    watched: list[_Watched] = []
    try:
        watched = [_Watched(session, m.container_port) for m in itself]
        with forward_ports(session, elsewhere) as forwarded:
            yield [(m.container_port, m.container_port) for m in itself] + forwarded
    finally:
        for port in watched:
            port.close()
