"""The owner's side of a run in the Pulumi backend (state/backend_records.py), while it runs: a
heartbeat that tells other machines the owner lives, the run's log shipped for `logs` from
anywhere (when it grew, and once more at the end), and stop requests made from elsewhere, which
stop the run the way `dstack-iac stop` on this machine would (SIGTERM to the owner).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from dstack_iac.errors import DstackIacError
from dstack_iac.runs.log_index import index_path
from dstack_iac.state import backend_records
from dstack_iac.state.runs import RunRecord


class BackendSync:
    def __init__(self, record_of: Callable[[], RunRecord], log_path: Path, warn: Callable[[str], None]):
        self.record_of = record_of
        self.log_path = log_path
        self.warn = warn
        self.interval = backend_records.heartbeat_seconds()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="backend-sync")
        self._shipped_size = -1
        self._unreachable = False
        self._stop_asked = False
        self._lock = threading.Lock()

    def start(self) -> BackendSync:
        self._guarded(self._beat)
        self._thread.start()
        return self

    def _guarded(self, call) -> None:
        try:
            call()
        except (DstackIacError, OSError) as exc:
            if not self._unreachable:
                self._unreachable = True
                self.warn(f"The Pulumi backend cannot be updated ({getattr(exc, 'message', exc)}): other machines may "
                          "see this run as orphaned; the run goes on")
        else:
            self._unreachable = False

    def _beat(self) -> None:
        record = self.record_of()
        if not record.generation:
            return
        backend_records.beat(record)
        requester = backend_records.stop_request(record)
        if requester and not self._stop_asked:
            self._stop_asked = True
            self.warn(f"Stop requested by {requester}: stopping {record.name}")
            os.kill(os.getpid(), signal.SIGTERM)
        self._ship(record)

    def _ship(self, record: RunRecord) -> None:
        with self._lock:
            try:
                data = self.log_path.read_bytes()
            except OSError:
                return
            if len(data) != self._shipped_size:
                try:  # the log's times, for `logs --since` from another machine
                    times = index_path(self.log_path).read_bytes()
                except OSError:
                    times = None
                backend_records.ship_log(record, data, times)
                self._shipped_size = len(data)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._guarded(self._beat)

    def close(self) -> None:
        """At the end of the run: the whole log once more, and no heartbeat any more."""
        self._stop.set()
        self._thread.join(timeout=self.interval + 30)
        record = self.record_of()
        if not record.generation:
            return
        self._guarded(lambda: self._ship(record))
        self._guarded(lambda: self._say_who_stopped(record))
        self._guarded(lambda: (backend_records.end_heartbeat(record), backend_records.clear_stop_request(record)))

    def _say_who_stopped(self, record: RunRecord) -> None:
        """A `stop` on this machine signals the owner at once, so the run may end before a
        heartbeat read the request: who asked is said in any case (the request is written first)."""
        if self._stop_asked:
            return
        requester = backend_records.stop_request(record)
        if requester:
            self._stop_asked = True
            self.warn(f"Stop requested by {requester}: {record.name} was stopped")
