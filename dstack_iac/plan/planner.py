"""Planning: from a validated task to a `RunPlan`. Pure apart from what the backends read of this
machine: the candidate backends and the volume records are handed in.

Every candidate backend is asked for its cheapest offer; the cheapest of all wins (a backend on
machines the user already has costs nothing, so it wins ties with no one). A backend that cannot
run the task says why, and when none can, every reason is reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dstack_iac.config.loader import Task
from dstack_iac.errors import DstackIacError, NoOffer
from dstack_iac.model.backend import Backend, OfferRequest
from dstack_iac.model.offers import Offer
from dstack_iac.model.plan import ResolvedMount, RunPlan
from dstack_iac.plan.mounts import resolve_mounts, volume_place
from dstack_iac.state.volumes import VolumeRecord

DEFAULT_LEASE_SECONDS = 600


class _Candidate:
    def __init__(self, backend: Backend, offer: Offer, mounts: list[ResolvedMount], python: str):
        self.backend, self.offer, self.mounts, self.python = backend, offer, mounts, python


def _try(backend: Backend, task: Task, volumes: Mapping[str, VolumeRecord]) -> _Candidate:
    configuration = task.configuration
    backend.check_task(configuration)
    mounts = resolve_mounts(configuration, backend, volumes)
    offers = backend.offers(OfferRequest(configuration=configuration, volume_place=volume_place(mounts)))
    if not offers:
        raise NoOffer(f"the {backend.name} backend has no offer for this task")
    return _Candidate(backend, offers[0], mounts, backend.node_python(configuration.python))


def plan_run(task: Task, run_name: str, candidates: Sequence[Backend], volumes: Mapping[str, VolumeRecord],
             lease_seconds: int = DEFAULT_LEASE_SECONDS) -> RunPlan:
    """The plan on the cheapest candidate that can run the task; the reasons of all when none can."""
    if not candidates:
        raise NoOffer("no backend to consider: name one with `backends:` or -b")
    chosen: _Candidate | None = None
    refusals: list[tuple[Backend, DstackIacError]] = []
    for backend in candidates:
        try:
            candidate = _try(backend, task, volumes)
        except DstackIacError as exc:
            refusals.append((backend, exc))
            continue
        if chosen is None or candidate.offer.price < chosen.offer.price:
            chosen = candidate
    if chosen is None:
        if len(refusals) == 1:
            raise refusals[0][1]
        reasons = "\n".join(f"- {backend.name}: {exc.render()}" for backend, exc in refusals)
        raise DstackIacError(f"no backend can run this task:\n{reasons}", exit_status=refusals[0][1].exit_status)
    configuration = task.configuration
    return RunPlan(
        run_name=run_name,
        configuration=configuration,
        configuration_path=task.display_path,
        repo_dir=task.repo_dir,
        backend=chosen.backend.name,
        offer=chosen.offer,
        nodes=configuration.nodes,
        run_args=task.run_args,
        build=task.build,
        python=chosen.python,
        mounts=chosen.mounts,
        lease_seconds=lease_seconds,
        env_references=task.env_references,
    )
