"""Which backends a task may run on, and its plan on the cheapest of them."""

from __future__ import annotations

import os
from collections.abc import Callable

from dstack_iac.backends.registry import NotImplementedBackend, all_backends, get_backend
from dstack_iac.config.loader import Task
from dstack_iac.model.backend import Backend
from dstack_iac.model.plan import RunPlan
from dstack_iac.plan.names import generate_run_name
from dstack_iac.plan.planner import DEFAULT_LEASE_SECONDS, plan_run
from dstack_iac.state import volumes
from dstack_iac.state.secrets import SecretStore


def candidate_backends(task: Task, note: Callable[[str], None] = lambda _: None) -> list[Backend]:
    """The backends the task names, else those that need nothing set up (`local`)."""
    if not task.configuration.backends:
        return [backend for backend in all_backends() if backend.considered_by_default()]
    return named_backends(task.configuration.backends, note)


def named_backends(names: list[str], note: Callable[[str], None] = lambda _: None) -> list[Backend]:
    """The named backends; those dstack-iac does not implement are skipped, with a note, while
    one that it does remains (NotImplementedBackend when none does)."""
    found, missing = [], []
    for name in dict.fromkeys(names):
        try:
            found.append(get_backend(name))
        except NotImplementedBackend as exc:
            missing.append(exc)
    if not found:
        raise missing[0]
    for exc in missing:
        note(f"Skipping backends: {exc.message}")
    return found


LEASE_ENV = "DSTACK_IAC_LEASE_SECONDS"


def lease_seconds(flag: str | None = None) -> int:
    """The nodes' lease: `--lease`, else $DSTACK_IAC_LEASE_SECONDS, else 600 s."""
    from dstack_iac.config.grammar import parse_duration
    from dstack_iac.errors import BadInput

    given, source = (flag, "--lease") if flag is not None else (os.environ.get(LEASE_ENV), LEASE_ENV)
    if given is None:
        return DEFAULT_LEASE_SECONDS
    try:
        seconds = parse_duration(given)
    except ValueError as exc:
        raise BadInput(f"{source}: {exc}") from None
    if not seconds or seconds < 10:
        raise BadInput(f"{source}: a lease of {given!r} would end the nodes before they start: use 10s or more")
    return seconds


def plan_task(task: Task, run_name: str | None = None, lease_seconds: int = DEFAULT_LEASE_SECONDS,
              note: Callable[[str], None] = lambda _: None) -> RunPlan:
    if not (run_name or task.configuration.name):
        from dstack_iac.state.team import active_names

        run_name = generate_run_name(active_names())  # free among everyone sharing the backend
    name = run_name or task.configuration.name
    records = {record.name: record for record in volumes.all_volumes()}
    secrets = SecretStore().resolve(task.secret_names) if task.secret_names else {}
    return plan_run(task, name, candidate_backends(task, note), records, lease_seconds=lease_seconds, secrets=secrets)
