"""Forwarding the task's ports from node 0 to this machine, over the run's SSH connection."""

from __future__ import annotations

import contextlib
import socket

from dstack_iac.config.models import PortMapping


def free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def forward_ports(session, ports: list[PortMapping]):
    """Yields [(local_port, remote_port)] while the tunnels are open."""
    forwarded = []
    with contextlib.ExitStack() as stack:
        for mapping in ports:
            local = mapping.local_port or free_local_port()
            stack.enter_context(
                session.connection.forward_local(local_port=local, remote_port=mapping.container_port,
                                                 remote_host=session.endpoint.private_address, local_host="127.0.0.1")
            )
            forwarded.append((local, mapping.container_port))
        yield forwarded
