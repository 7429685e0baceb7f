"""Runs as everyone sharing the Pulumi backend sees them: this state dir's records merged with
the backend's (state/backend_records.py), each with the status its owner's liveness gives it.

For a run of this state dir the local record and the run's lock decide, as they always did;
for any other run the backend's record decides, with the owner's process when it lives on this
machine and its heartbeat when it lives elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dstack_iac.errors import DstackIacError
from dstack_iac.state import backend_records, identity, runs
from dstack_iac.state.runs import RunRecord, RunStatus


@dataclass(frozen=True)
class RunView:
    record: RunRecord
    status: RunStatus
    owner_alive: bool
    here: bool  # a run of this state dir (its directory, keys and log are here)

    @property
    def name(self) -> str:
        return self.record.name

    def as_json(self) -> dict:
        return {**self.record.model_dump(mode="json"), "status": self.status.value}


def _is_local(local: RunRecord | None, shared: RunRecord) -> bool:
    return local is not None and local.generation == shared.generation and local.run_dir == shared.run_dir \
        and backend_records.on_this_host(shared)


def _local_view(mine: RunRecord, theirs: RunRecord | None) -> RunView:
    """This state dir's run; if someone stopped it from elsewhere after its owner died, the
    backend's record has the last word."""
    if theirs is not None and mine.status.active and not theirs.status.active:
        return RunView(theirs, theirs.status, False, here=True)
    alive = runs.owner_alive(mine.name)
    return RunView(mine, mine.status_given(alive), alive, here=True)


def list_runs(note: Callable[[str], None] = lambda _: None) -> list[RunView]:
    """Every run of the backend and of this state dir, newest first."""
    local = {record.name: record for record in runs.all_runs()}
    unshared = backend_records.no_records_note()
    if unshared:
        note(unshared)
    try:
        shared = backend_records.all_records()
        beats = backend_records.heartbeats()
    except DstackIacError as exc:
        note(f"The Pulumi backend cannot be read ({exc.message}): showing this machine's runs only")
        shared, beats = {}, backend_records.Heartbeats({})
    views = []
    for name in set(local) | set(shared):
        mine, theirs = local.get(name), shared.get(name)
        if theirs is None or (mine is not None and _is_local(mine, theirs)):
            views.append(_local_view(mine, theirs))
            continue
        alive = backend_records.owner_alive(theirs, beats)
        views.append(RunView(theirs, theirs.status_given(alive), alive, here=False))
    return sorted(views, key=lambda view: view.record.created_at, reverse=True)


def find_run(name: str) -> RunView | None:
    """The run named `name`: this state dir's when it is the backend's latest of that name (or
    the backend has none), else the backend's."""
    mine = runs.load(name)
    try:
        theirs = backend_records.find(name)
    except DstackIacError:
        if mine is None:
            raise
        # The backend cannot be read: this state dir's own run is still stopped and read here.
        return _local_view(mine, None)
    if theirs is None or (mine is not None and _is_local(mine, theirs)):
        return None if mine is None else _local_view(mine, theirs)
    alive = backend_records.owner_alive(theirs)
    return RunView(theirs, theirs.status_given(alive), alive, here=False)


def active_names() -> set[str]:
    """Names no new run may take: active runs of the backend and of this state dir."""
    return {view.name for view in list_runs() if view.status.active}


def is_mine(view: RunView) -> bool:
    return view.record.owner == identity.owner()
