"""Which fields of a task need what of a backend, and which fields dstack-iac cannot honour on any
backend. Pure: the planner asks each candidate backend for its capabilities and refuses, before
anything is created, a field the backend lacks (naming the field, the backend and what would
work): a field is honoured or refused, never silently dropped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dstack_iac.config.models import TaskConfiguration
from dstack_iac.config.run_policies import CreationPolicy
from dstack_iac.model.backend import Capability


@dataclass(frozen=True)
class Requirement:
    field: str
    capability: Capability
    asked: Callable[[TaskConfiguration], bool]


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("image", Capability.CONTAINERS, lambda c: bool(c.image)),
    Requirement("resources.shm_size", Capability.CONTAINERS,
                lambda c: any(g.resources.shm_size is not None for g in c.node_groups)),
    Requirement("docker", Capability.DOCKER_IN_DOCKER, lambda c: bool(c.docker)),
    Requirement("privileged", Capability.PRIVILEGED, lambda c: c.privileged),
    Requirement("nvcc", Capability.CUDA_COMPILER, lambda c: bool(c.nvcc)),
    Requirement("user", Capability.RUN_AS_USER, lambda c: c.user is not None),
    Requirement("reservation", Capability.RESERVATIONS, lambda c: c.reservation is not None),
    Requirement("fleets", Capability.EXISTING_MACHINES, lambda c: bool(c.fleets)),
    Requirement("instances", Capability.EXISTING_MACHINES, lambda c: bool(c.instances)),
    Requirement("creation_policy", Capability.EXISTING_MACHINES,
                lambda c: c.creation_policy == CreationPolicy.REUSE),
)


def required(configuration: TaskConfiguration) -> list[Requirement]:
    """The requirements the task asks for, in field order."""
    return [requirement for requirement in REQUIREMENTS if requirement.asked(configuration)]


@dataclass(frozen=True)
class Unhonoured:
    """A field no backend of dstack-iac honours, and why."""

    field: str
    why: str
    instead: str


def unhonoured(configuration: TaskConfiguration) -> list[Unhonoured]:
    """Fields dstack documents that need what dstack-iac replaces or does not have."""
    found = []
    if configuration.dstack:
        found.append(Unhonoured("dstack", "it makes a dstack server reachable from the run, and dstack-iac has no "
                                          "server (runs are stacks in your Pulumi backend)", "remove dstack: true"))
    if configuration.backend_options:
        names = ", ".join(option.type for option in configuration.backend_options)
        found.append(Unhonoured("backend_options", f"they configure {names}, and dstack-iac has no options for it "
                                                   "(dstack defines them for vastai, which it does not provision)",
                                "remove backend_options"))
    if configuration.idle_duration not in (None, 0):
        found.append(Unhonoured("idle_duration", "dstack-iac deletes a run's machines as soon as the run ends, so "
                                                 "nothing waits idle to be reused (machines you keep are an SSH "
                                                 "fleet's hosts)", "remove idle_duration, or set it to 0"))
    return found
