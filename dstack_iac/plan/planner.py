"""Planning: from a validated task to a `RunPlan`. Pure apart from what the backends read of this
machine: the candidate backends, the volume records and the secrets are handed in.

Every candidate backend is asked for its cheapest offer per node group (a task without `groups`
has one); the cheapest backend wins (a backend on machines the user already has costs nothing).
The groups of a run share a region, so that the nodes reach each other. A backend that cannot
run the task says why, and when none can, every reason is reported. Fields that need what a
backend lacks are refused here, at their line, before anything is created.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import SecretStr

from dstack_iac.config.loader import Task
from dstack_iac.config.models import TaskConfiguration
from dstack_iac.errors import BadInput, DstackIacError, NoOffer, UnsupportedField
from dstack_iac.model.backend import Backend, OfferRequest
from dstack_iac.model.offers import Offer
from dstack_iac.model.plan import GroupPlan, ResolvedMount, RunPlan
from dstack_iac.plan.capabilities import required, unhonoured
from dstack_iac.plan.mounts import resolve_mounts, volume_place

DEFAULT_LEASE_SECONDS = 600


class _Candidate:
    def __init__(self, backend: Backend, offers: list[Offer], mounts: list[ResolvedMount], python: str):
        self.backend, self.offers, self.mounts, self.python = backend, offers, mounts, python
        self.price = 0.0

    def priced(self, configuration: TaskConfiguration) -> _Candidate:
        self.price = sum(offer.price * group.nodes for offer, group in zip(self.offers, configuration.node_groups))
        return self


def check_honoured(task: Task, backend: Backend) -> None:
    """Refuse, at its line, a field that needs what `backend` lacks."""
    for requirement in required(task.configuration):
        if requirement.capability not in backend.capabilities:
            why, instead = backend.lacks(requirement.capability, requirement.field)
            raise UnsupportedField(requirement.field, backend.name, why, instead, where=task.where(requirement.field))
    try:
        backend.check_task(task.configuration)
    except UnsupportedField as exc:
        raise exc.located(task.where(exc.field)) from None


def _group_request(configuration: TaskConfiguration, index: int) -> TaskConfiguration:
    """The task as one group's offers are asked for: that group's nodes and resources."""
    group = configuration.node_groups[index]
    return configuration.model_copy(update={"resources": group.resources, "nodes": group.nodes, "groups": None,
                                            "commands": group.commands, "ports": group.ports})


def _cheapest_together(per_group: list[list[Offer]]) -> list[Offer] | None:
    """One offer per group, all in one region (the cheapest such set); None when no region has
    an offer for every group."""
    if len(per_group) == 1:
        return [per_group[0][0]] if per_group[0] else None
    best: list[Offer] | None = None
    for region in {offer.region for offer in per_group[0]}:
        chosen = [next((o for o in offers if o.region == region), None) for offers in per_group]
        if all(chosen) and (best is None or sum(o.price for o in chosen) < sum(o.price for o in best)):  # type: ignore[union-attr]
            best = chosen  # type: ignore[assignment]
    return best


def _try(backend: Backend, task: Task, volumes: Mapping[str, object]) -> _Candidate:
    configuration = task.configuration
    check_honoured(task, backend)
    mounts = resolve_mounts(configuration, backend, volumes)
    place = volume_place(mounts)
    per_group = [backend.offers(OfferRequest(configuration=_group_request(configuration, index), volume_place=place))
                 for index in range(len(configuration.node_groups))]
    for index, offers in enumerate(per_group):
        if not offers:
            which = f" for group {configuration.node_groups[index].name}" if configuration.groups else ""
            raise NoOffer(f"the {backend.name} backend has no offer{which} for this task")
    chosen = _cheapest_together(per_group)
    if chosen is None:
        raise NoOffer(f"the {backend.name} backend has no region with an offer for every group (a run's nodes share "
                      "a region)")
    return _Candidate(backend, chosen, mounts, backend.node_python(configuration.python)).priced(configuration)


def refuse_unhonoured(task: Task) -> None:
    """Fields no backend of dstack-iac honours, refused at their lines."""
    problems = unhonoured(task.configuration)
    if problems:
        lines = [f"{task.where(p.field)}: {p.field}: {p.why}; {p.instead}" for p in problems]
        raise BadInput("\n".join(lines))


def plan_run(task: Task, run_name: str, candidates: Sequence[Backend], volumes: Mapping[str, object],
             lease_seconds: int = DEFAULT_LEASE_SECONDS, secrets: Mapping[str, str] | None = None) -> RunPlan:
    """The plan on the cheapest candidate that can run the task; the reasons of all when none can."""
    refuse_unhonoured(task)
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
        if chosen is None or candidate.price < chosen.price:
            chosen = candidate
    if chosen is None:
        if len(refusals) == 1:
            raise refusals[0][1]
        reasons = "\n".join(f"- {backend.name}: {exc.render()}" for backend, exc in refusals)
        raise DstackIacError(f"no backend can run this task:\n{reasons}", exit_status=refusals[0][1].exit_status)
    configuration = task.configuration
    groups, first = [], 0
    for index, (group, offer) in enumerate(zip(configuration.node_groups, chosen.offers)):
        groups.append(GroupPlan(name=group.name or str(index), index=index, first_rank=first, nodes=group.nodes,
                                offer=offer))
        first += group.nodes
    return RunPlan(
        run_name=run_name,
        configuration=configuration,
        configuration_path=task.display_path,
        repo_dir=task.repo_dir,
        backend=chosen.backend.name,
        offer=chosen.offers[0],
        nodes=configuration.total_nodes,
        groups=groups,
        run_args=task.run_args,
        build=task.build,
        python=chosen.python,
        mounts=chosen.mounts,
        lease_seconds=lease_seconds,
        env_references=task.env_references,
        secrets={name: SecretStr(value) for name, value in (secrets or {}).items()},
    )
