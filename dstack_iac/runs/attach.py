"""`attach RUN`: follow an active run from any terminal, as many at once as you like.

It streams the nodes' output (from the start with `--logs`, else what comes from now on) and,
for a detached run, its supervisor's messages; it forwards the run's ports to this machine while
attached (the run's mapping, with `-p` overriding it as on `run`), reconnecting when a retry
brings new nodes. Ctrl+C detaches: the run goes on (asked, when interactive, whether to stop it
instead; the default is no). When the run ends, attach says how and exits with the run's code.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dstack_iac.config.models import PortMapping, check_unique_ports
from dstack_iac.errors import BadInput, DstackIacError
from dstack_iac.runs.access import RunAccess, access_path, load_access
from dstack_iac.runs.supervisor import EVENTS_FILE
from dstack_iac.state import runs

POLL = 0.2


def merge_ports(ports: list[PortMapping], flags: list[str]) -> list[PortMapping]:
    """`-p` adds a mapping, or replaces the one of the same remote port (as on `run`)."""
    extra = []
    for flag in flags:
        try:
            extra.append(PortMapping.model_validate(flag))
        except ValueError as exc:
            raise BadInput(f"-p {flag}: {exc.errors()[0]['msg'] if hasattr(exc, 'errors') else exc}") from None
    replaced = {mapping.container_port for mapping in extra}
    merged = [mapping for mapping in ports if mapping.container_port not in replaced] + extra
    try:
        check_unique_ports(merged)
    except ValueError as exc:
        raise BadInput(f"-p: {exc}") from None
    return merged


class _Tail:
    """A file read as it grows, from `position` (None: its end now)."""

    def __init__(self, path: Path, from_start: bool):
        self.path = path
        self.position = 0 if from_start else (path.stat().st_size if path.exists() else 0)

    def read(self) -> str:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.position)
                data = handle.read()
        except FileNotFoundError:
            return ""
        # Only whole characters: a line written half is read whole next time.
        cut = len(data)
        while cut and (data[cut - 1] & 0xC0) == 0x80:
            cut -= 1
        if cut and data[cut - 1] >= 0xC0:
            cut -= 1
        self.position += cut
        return data[:cut].decode("utf-8", errors="replace")


@dataclass
class AttachOutput:
    line: Callable[[str], None]  # the nodes' output (stdout)
    event: Callable[[str], None]  # the supervisor's messages and attach's own (stderr)


class _Forwarding:
    """The run's ports on this machine, over sessions of attach's own to each group's first
    node (`-p` applies to node 0's)."""

    def __init__(self, name: str, ports: list[str], out: AttachOutput):
        self.name = name
        self.port_flags = ports
        self.out = out
        self._stack: contextlib.ExitStack | None = None
        self._seen: float | None = None

    def refresh(self) -> None:
        """(Re)connect when the run's nodes are new (first seen, or a retry replaced them)."""
        path = access_path(self.name)
        try:
            stamp = path.stat().st_mtime
        except OSError:
            return
        if stamp == self._seen:
            return
        access = load_access(self.name)
        if access is None:
            return
        self._seen = stamp
        self.close()
        wanted = dict(access.ports_by_rank)
        wanted[0] = merge_ports(wanted.get(0, []), self.port_flags)
        self._stack = contextlib.ExitStack()
        for rank, ports in sorted(wanted.items()):
            if ports:
                self._open(access, rank, ports)

    def _open(self, access: RunAccess, rank: int, ports: list[PortMapping]) -> None:
        from dstack_iac.backends.registry import get_backend
        from dstack_iac.execution.session import NodeSession

        stack = contextlib.ExitStack()
        try:
            session = NodeSession(access.node(rank), Path(access.key_path), Path(access.known_hosts))
            stack.callback(session.close)
            forwarded = stack.enter_context(get_backend(access.backend).forward_ports(session, ports))
        except DstackIacError as exc:
            stack.close()
            self.out.event(f"Ports of node {rank} not forwarded: {exc.render()}")
            return
        except Exception as exc:  # noqa: BLE001 - the node may be going away: logs still stream
            stack.close()
            self.out.event(f"Ports not forwarded: node {rank} did not answer ({type(exc).__name__}: {exc})")
            return
        self._stack.enter_context(stack)
        for local, remote in forwarded:
            self.out.event(f"Forwarding http://127.0.0.1:{local} -> port {remote} of node {rank} (while attached)")

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


def attach(name: str, out: AttachOutput, *, from_start: bool = False, ports: list[str] = (),
           ask_to_stop: Callable[[], bool] = lambda: False, stop: Callable[[str], None] | None = None) -> int:
    """Follow `name` until it ends (its exit code) or Ctrl+C (0, the run goes on unless
    `ask_to_stop` says to stop it)."""
    record = runs.load(name)
    if record is None:
        raise BadInput(f"no run named {name!r} (see `dstack-iac ps --all`)")
    merge_ports([], list(ports))  # a bad -p fails before anything is shown
    logs = _Tail(record.log_path, from_start)
    events = _Tail(record.directory / EVENTS_FILE, from_start)
    if not record.effective_status.active:
        _drain(logs, events, out)
        out.event(f"Run {name} is not active ({_ending(record)}); `dstack-iac logs {name}` shows its output")
        return record.exit_code or 0
    forwarding = _Forwarding(name, list(ports), out)
    out.event(f"Attached to {name} ({record.effective_status.value}); Ctrl+C detaches, the run goes on")
    try:
        while True:
            _drain(logs, events, out)
            forwarding.refresh()
            if not runs.owner_alive(name):
                break
            time.sleep(POLL)
    except KeyboardInterrupt:
        forwarding.close()
        if ask_to_stop() and stop is not None:
            stop(name)
            return 0
        out.event(f"Detached from {name}: it goes on (`dstack-iac attach {name}` again, `dstack-iac stop {name}`)")
        return 0
    forwarding.close()
    _drain(logs, events, out)
    final = runs.load(name) or record
    out.event(f"Run {name} ended: {_ending(final)}")
    return final.exit_code if final.exit_code is not None else 0


def _drain(logs: _Tail, events: _Tail, out: AttachOutput) -> None:
    text = logs.read()
    if text:
        out.line(text)
    messages = events.read()
    if messages:
        out.event(messages.rstrip("\n"))


def _ending(record) -> str:
    status = record.effective_status.value
    return status + (f", exit code {record.exit_code}" if record.exit_code is not None else "")
