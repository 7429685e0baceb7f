"""A run's nodes as one group: connect, upload, run and stop on every node at once, each
operation answering with a group result (one outcome per rank), as Fabric's ThreadingGroup and
GroupResult do. Transport-neutral above `NodeSession`: backends say how to connect."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dstack_iac.errors import NodeLost
from dstack_iac.execution.session import NodeSession
from dstack_iac.model.nodes import NodeEndpoint


@dataclass
class NodeOutcome:
    rank: int
    value: Any = None
    error: BaseException | None = None


@dataclass
class GroupResult:
    """One outcome per rank, in rank order."""

    outcomes: list[NodeOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[NodeOutcome]:
        return [o for o in self.outcomes if o.error is not None]

    @property
    def values(self) -> list[Any]:
        return [o.value for o in self.outcomes]

    def raise_first(self) -> GroupResult:
        """Raise the lowest rank's error, naming the node, when any failed."""
        for outcome in self.failed:
            raise outcome.error  # type: ignore[misc]
        return self


def fan_out(items: Sequence[Any], call: Callable[[Any], Any], rank_of: Callable[[Any], int],
            abort: Callable[[], None] | None = None) -> GroupResult:
    """`call(item)` for every item at once; every error is in its outcome. `abort` is called
    while waiting and may raise (a signal asking the run to stop): the threads are then left to
    end on their own (daemon threads: nothing waits for them at exit)."""
    if not items:
        return GroupResult()
    outcomes: list[NodeOutcome] = []
    done = threading.Condition()

    def worker(item: Any) -> None:
        try:
            outcome = NodeOutcome(rank_of(item), value=call(item))
        except Exception as exc:  # noqa: BLE001 - collected per node
            outcome = NodeOutcome(rank_of(item), error=exc)
        with done:
            outcomes.append(outcome)
            done.notify_all()

    for item in items:
        threading.Thread(target=worker, args=(item,), daemon=True, name=f"node-{rank_of(item)}").start()
    with done:
        while len(outcomes) < len(items):
            done.wait(timeout=0.2)
            if abort is not None:
                abort()
    return GroupResult(sorted(outcomes, key=lambda o: o.rank))


class NodeGroup:
    """The sessions of a run's nodes, rank order."""

    def __init__(self, sessions: Sequence[NodeSession]):
        self.sessions = sorted(sessions, key=lambda s: s.endpoint.rank)

    @classmethod
    def connect(cls, endpoints: Sequence[NodeEndpoint], connect: Callable[[NodeEndpoint], NodeSession],
                abort: Callable[[], None] | None = None) -> NodeGroup:
        """Connect to every node at once; when any fails, close the others and raise its error."""
        result = fan_out(endpoints, connect, lambda endpoint: endpoint.rank, abort)
        group = cls([o.value for o in result.outcomes if o.error is None])
        if result.failed:
            group.close()
            result.raise_first()
        return group

    def __len__(self) -> int:
        return len(self.sessions)

    @property
    def master(self) -> NodeSession:
        return self.sessions[0]

    def each(self, call: Callable[[NodeSession], Any], abort: Callable[[], None] | None = None) -> GroupResult:
        return fan_out(self.sessions, call, lambda session: session.endpoint.rank, abort)

    def upload(self, archive: bytes, abort: Callable[[], None] | None = None) -> None:
        self.each(lambda session: session.upload(archive), abort).raise_first()

    def stop(self, grace: float | None = 3.0) -> None:
        self.each(lambda session: session.stop(grace))

    def close(self) -> None:
        for session in self.sessions:
            with contextlib.suppress(Exception):
                session.close()


class CommandsOutcome:
    """How the commands ended on the group: the run's exit code and why."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.first_failure: tuple[int, int] | None = None  # (rank, exit code)
        self.stopped_by: tuple[str, int] | None = None  # (reason, exit code): max_duration, ...

    def node_failed(self, rank: int, code: int) -> bool:
        """Record a node's failure; True for the first one (which stops the others)."""
        with self._lock:
            if self.first_failure is None and self.stopped_by is None:
                self.first_failure = (rank, code)
                return True
            return False

    def stop_all(self, reason: str, code: int) -> bool:
        with self._lock:
            if self.stopped_by is None:
                self.stopped_by = (reason, code)
                return True
            return False

    def exit_code(self, codes: Sequence[int]) -> int:
        if self.stopped_by is not None:
            return self.stopped_by[1]
        if self.first_failure is not None:
            return self.first_failure[1] if self.first_failure[1] > 0 else 1
        return max(codes) if any(codes) else 0


class StartGate:
    """`startup_order`: with master-first, the workers' commands start once the master's have;
    with workers-first, the master's once every worker's have; with any, all at once. A node
    that waits gives up when the run is stopping (`abandoned`)."""

    def __init__(self, order: str, ranks: Sequence[int], abandoned: Callable[[], bool]):
        self.order = order
        self._ranks = list(ranks)
        self._started: set[int] = set()
        self._abandoned = abandoned
        self._lock = threading.Condition()

    def _waits_for(self, rank: int) -> list[int]:
        master = self._ranks[0] if self._ranks else 0
        if self.order == "master-first" and rank != master:
            return [master]
        if self.order == "workers-first" and rank == master:
            return [r for r in self._ranks if r != master]
        return []

    def wait_turn(self, rank: int) -> bool:
        """Block until `rank` may start; False when the run stopped meanwhile."""
        needed = self._waits_for(rank)
        with self._lock:
            while not all(r in self._started for r in needed):
                if self._abandoned():
                    return False
                self._lock.wait(timeout=0.2)
        return not self._abandoned()

    def started(self, rank: int) -> None:
        with self._lock:
            self._started.add(rank)
            self._lock.notify_all()


def run_on_group(
    group: NodeGroup,
    run_node: Callable[[NodeSession], int],
    *,
    on_node_failed: Callable[[int, int], None],
    outcome: CommandsOutcome,
    stop_grace: float | None = 3.0,
    master_done_stops_all: bool = False,
    on_master_done: Callable[[], None] = lambda: None,
) -> int:
    """Run the script on every node; the first node to fail stops the others (a lost node too).
    Returns the run's exit code. A node stopped on purpose exits 143 and is not a failure.
    With `master_done_stops_all` (stop_criteria: master-done), the master exiting 0 ends the
    run successfully and stops the workers."""

    def stop_others(session: NodeSession) -> None:
        for other in group.sessions:
            if other is not session:
                threading.Thread(target=other.stop, args=(stop_grace,), daemon=True).start()

    def node(session: NodeSession) -> int:
        rank = session.endpoint.rank
        try:
            code = run_node(session)
        except NodeLost:
            if not session.stopped:
                stop_others(session)
                raise
            code = 143
        if code == 0 and master_done_stops_all and session is group.master and len(group) > 1 \
                and outcome.stop_all("master-done", 0):
            on_master_done()
            stop_others(session)
        elif code != 0 and not session.stopped and outcome.node_failed(rank, code):
            on_node_failed(rank, code)
            stop_others(session)
        return code

    result = group.each(node)
    result.raise_first()
    return outcome.exit_code(result.values)


class Connector:
    """Connects to nodes as they become known (while the others are still being created), and
    readies each one (uploads the working directory) in the same thread."""

    def __init__(self, connect: Callable[[NodeEndpoint], NodeSession], ready: Callable[[NodeSession], None],
                 on_first: Callable[[str], None] = lambda _: None):
        self._connect = connect
        self._ready = ready
        self._on_first = on_first
        self._lock = threading.Condition()
        self._started: set[int] = set()
        self._sessions: dict[int, NodeSession] = {}
        self._connected: set[int] = set()
        self._readied: set[int] = set()
        self._errors: dict[int, BaseException] = {}
        self._told: set[str] = set()

    def _say_once(self, what: str) -> None:
        with self._lock:
            if what in self._told:
                return
            self._told.add(what)
        self._on_first(what)

    def start(self, endpoint: NodeEndpoint) -> None:
        with self._lock:
            if endpoint.rank in self._started:
                return
            self._started.add(endpoint.rank)
        threading.Thread(target=self._work, args=(endpoint,), daemon=True, name=f"connect-{endpoint.rank}").start()

    def _work(self, endpoint: NodeEndpoint) -> None:
        try:
            self._say_once("connect")
            session = self._connect(endpoint)
            with self._lock:
                self._sessions[endpoint.rank] = session
                self._connected.add(endpoint.rank)
                self._lock.notify_all()
            self._say_once("ready")
            self._ready(session)
            with self._lock:
                self._readied.add(endpoint.rank)
                self._lock.notify_all()
        except Exception as exc:  # noqa: BLE001 - reported by the wait that needs this node
            with self._lock:
                self._errors[endpoint.rank] = exc
                self._lock.notify_all()

    def _wait(self, ranks: Sequence[int], done: set[int], abort: Callable[[], None] | None) -> None:
        with self._lock:
            while not all(rank in done or rank in self._errors for rank in ranks):
                self._lock.wait(timeout=0.2)
                if abort is not None:
                    abort()
            for rank in sorted(ranks):
                if rank in self._errors:
                    raise self._errors[rank]

    def wait_connected(self, endpoints: Sequence[NodeEndpoint], abort: Callable[[], None] | None = None) -> None:
        for endpoint in endpoints:
            self.start(endpoint)
        self._wait([e.rank for e in endpoints], self._connected, abort)

    def wait_ready(self, endpoints: Sequence[NodeEndpoint], abort: Callable[[], None] | None = None) -> NodeGroup:
        self._wait([e.rank for e in endpoints], self._readied, abort)
        return NodeGroup([self._sessions[e.rank] for e in endpoints])

    def close(self) -> None:
        """Close every session opened so far (a failed run's, or a retry's)."""
        with self._lock:
            sessions = list(self._sessions.values())
        NodeGroup(sessions).close()
