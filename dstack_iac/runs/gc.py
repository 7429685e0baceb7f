"""`dstack-iac gc`: what belongs to runs that have no live owner or no stack any more.

A run is garbage when its owner is gone and something of it remains (its stack, nodes the stack
never knew, its keys), or when its stack is gone while its nodes remain. Each backend says what
a run left outside its stack (its markers: directories, processes, keys), and a cloud backend
finds resources tagged with a run that has no stack (`dstack-iac:run`). Removing goes through the
stack when it exists, directly otherwise; like `stop`, it is idempotent and takes the run's lock,
so the two never clean up the same run at once.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from dstack_iac.backends.registry import all_backends, get_backend
from dstack_iac.backends.registry import names as registry_names
from dstack_iac.config.models import RESERVED_STACK_PREFIXES
from dstack_iac.errors import DstackIacError
from dstack_iac.infra.stack import ManagedStack, list_stacks
from dstack_iac.model.backend import Orphan
from dstack_iac.paths import run_dir, runs_dir
from dstack_iac.runs.stop import clean_up_run, stop_run
from dstack_iac.state import runs

Say = Callable[[str], None]
PREVIEW_PREFIX = "preview-"


class Garbage(BaseModel):
    run: str
    backend: str | None = None
    why: str
    leftovers: list[str]
    orphans: list[Orphan] = []
    owner_alive: bool = False
    remote: bool = False  # another state dir's or machine's run, known from the backend (runs/remote.py)


def _is_run_stack(name: str) -> bool:
    return not name.startswith(RESERVED_STACK_PREFIXES)


def _run_names(stacks: set[str]) -> set[str]:
    try:
        directories = {entry.name for entry in runs_dir().iterdir() if entry.is_dir()}
    except OSError:
        directories = set()
    return directories | {name for name in stacks if _is_run_stack(name)}


def _backend_of(name: str, has_stack: bool) -> str | None:
    record = runs.load(name)
    if record is not None:
        return record.backend
    if has_stack:
        return ManagedStack(name).tags().get("dstack-iac:backend")
    return None


def _remote_garbage(view, has_stack: bool, note: Say) -> Garbage | None:
    """A run of someone else sharing the backend: garbage only when its owner is gone, and only
    this machine's to collect when its nodes are not another machine's processes."""
    from dstack_iac.state.backend_records import on_this_host, owner_text

    record = view.record
    if (view.status.active and view.owner_alive) or (not view.status.active and not has_stack):
        return None
    backend = get_backend(record.backend) if record.backend in registry_names() else None
    if backend is not None and backend.host_bound and not on_this_host(record):
        note(f"{record.name}: left by {owner_text(record)}; {backend.host_bound_why}: collect it there")
        return None
    return Garbage(run=record.name, backend=record.backend, why=f"its owner ({owner_text(record)}) is gone",
                   leftovers=["its stack"] if has_stack else ["its record (active)"], remote=True)


def find_garbage(note: Say = lambda _: None) -> list[Garbage]:
    from dstack_iac.state.team import list_runs

    stacks = {summary.name for summary in list_stacks()}
    views = {view.name: view for view in list_runs(note)}
    found: list[Garbage] = []
    for name in sorted(_run_names(stacks) | {n for n, v in views.items() if not v.here}):
        has_stack = name in stacks
        view = views.get(name)
        if view is not None and not view.here:
            garbage = _remote_garbage(view, has_stack, note)
            if garbage is not None:
                found.append(garbage)
            continue
        alive = runs.owner_alive(name)
        if alive and has_stack:
            continue  # a live run: its owner tears it down
        backend_name = _backend_of(name, has_stack)
        leftovers = ["its stack"] if has_stack else []
        if backend_name is not None:
            leftovers += get_backend(backend_name).leftovers(name, run_dir(name))
        if list(run_dir(name).glob("id_ed25519*")):
            leftovers.append("its key pair")
        if not leftovers:
            continue
        why = "its owner is gone" if not alive else "its stack is gone while its nodes remain"
        found.append(Garbage(run=name, backend=backend_name, why=why, leftovers=leftovers, owner_alive=alive))
    for name in sorted(s for s in stacks if s.startswith(PREVIEW_PREFIX)):
        found.append(Garbage(run=name, why="a preview that was cut short", leftovers=["its stack (empty)"]))
    run_stacks = {name for name in stacks if _is_run_stack(name)}
    for backend in all_backends():
        if backend.catalog is None:
            continue
        try:
            backend.check_access()
            orphans = backend.find_orphans(run_stacks)
        except DstackIacError as exc:
            note(f"{backend.name}: not searched ({exc.message})")
            continue
        by_run: dict[str, list[Orphan]] = {}
        for orphan in orphans:
            by_run.setdefault(orphan.run, []).append(orphan)
        for run_name, items in sorted(by_run.items()):
            found.append(Garbage(run=run_name, backend=backend.name, why="tagged resources without a stack",
                                 leftovers=[f"{o.type} {o.id}" + (f" ({o.region})" if o.region else "") for o in items],
                                 orphans=items))
    return found


def collect(garbage: list[Garbage], say: Say) -> None:
    """Remove everything `find_garbage` listed."""
    for item in garbage:
        if item.orphans:
            for removed in get_backend(item.backend).remove_orphans(item.orphans):
                say(f"Removed {removed}.")
        elif item.remote:
            stop_run(item.run, say)
        elif item.run.startswith(PREVIEW_PREFIX):
            ManagedStack(item.run).remove(force=True)
            say(f"Removed the preview stack {item.run}.")
        elif item.owner_alive and runs.load(item.run) is not None:
            stop_run(item.run, say)
        else:
            clean_up_run(item.run, say, backend_name=item.backend)
