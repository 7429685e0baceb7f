"""Renewing a run's lease on its nodes: while the run's owner lives, it touches each node's
lease file over the run's own SSH connections (a command on a new channel: no new port, no new
login). A node whose lease is not renewed for the lease's length ends itself (its backend's
watchdog), so a dead owner never leaves a node running for long."""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable

from dstack_iac.execution.group import NodeGroup

LEASE_FILE = "lease"


def renewal_interval(lease_seconds: int) -> float:
    """Often enough that a slow renewal or two never lets a live run's lease lapse."""
    return max(1.0, min(60.0, lease_seconds / 5))


class LeaseKeeper:
    def __init__(self, group: NodeGroup, lease_seconds: int, on_renewed: Callable[[], None] = lambda: None):
        self.group = group
        self.interval = renewal_interval(lease_seconds)
        self.on_renewed = on_renewed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="lease")

    def renew(self) -> None:
        self.group.each(lambda session: session.run(f"touch {shlex.quote(session.node_dir + '/' + LEASE_FILE)}",
                                                    timeout=self.interval))
        self.on_renewed()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.renew()
            except Exception:  # noqa: BLE001 - a node that does not answer is the run's own business
                pass

    def start(self) -> LeaseKeeper:
        self.renew()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
