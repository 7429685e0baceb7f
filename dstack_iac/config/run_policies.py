"""How a run's nodes start, end and are watched, and where they may be placed: dstack's
`groups`, `startup_order`, `stop_criteria`, `utilization_policy`, `fleets`, `instances`, `tags`
and `backend_options`, as typed models."""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

from pydantic import Field, field_validator, model_validator

from dstack_iac.config import grammar
from dstack_iac.config.backend_names import known_backend_names
from dstack_iac.config.base import Model

GROUP_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
TAG_KEY_RE = re.compile(r"^[_\-a-zA-Z0-9]{1,60}$")
TAG_VALUE_RE = re.compile(r"^[a-zA-Z0-9 .:/=_\-+@]{0,256}$")
MIN_UTILIZATION_WINDOW = 300  # dstack's floor: GPU metrics are too coarse for a shorter window
DEFAULT_STOP_DURATION = 300  # dstack's graceful-stop window


class StartupOrder(str, Enum):
    ANY = "any"
    MASTER_FIRST = "master-first"
    WORKERS_FIRST = "workers-first"


class StopCriteria(str, Enum):
    ALL_DONE = "all-done"
    MASTER_DONE = "master-done"


class CreationPolicy(str, Enum):
    REUSE = "reuse"
    REUSE_OR_CREATE = "reuse-or-create"


class UtilizationPolicy(Model):
    """Stop a run whose GPUs stay idle: every GPU below `min_gpu_utilization` for `time_window`."""

    min_gpu_utilization: int = Field(ge=0, le=100, description="Percent; a GPU at or above it counts as busy.")
    time_window: int = Field(description="How long all GPUs must stay below the threshold: 5m or more (seconds, "
                                         "or 30m, 1h, ...).")

    @field_validator("time_window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> Any:
        seconds = grammar.parse_duration(value)
        if seconds is not None and seconds < MIN_UTILIZATION_WINDOW:
            raise ValueError(f"time_window {value!r} is under 5m, the shortest window GPU sampling can judge")
        return seconds


class FleetReference(Model):
    """A fleet by name (`name` or `project/name`, as dstack writes it)."""

    project: str | None = Field(default=None, description="dstack's project; dstack-iac has one per Pulumi backend.")
    name: str = Field(description="The fleet's name.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = value.split("/")
            if len(parts) > 2 or not all(parts):
                raise ValueError(f"{value!r} is not a fleet: write NAME or PROJECT/NAME")
            return {"name": parts[-1], "project": parts[0] if len(parts) == 2 else None}
        return value


class InstanceReference(Model):
    """An existing machine: by `name`, by `hostname`, or by its index in a `fleet`."""

    name: str | None = Field(default=None, description="The instance's name.")
    hostname: str | None = Field(default=None, description="The host's address.")
    fleet: str | None = Field(default=None, description="With `instance`: the fleet it belongs to.")
    instance: int | None = Field(default=None, ge=0, description="With `fleet`: the host's index in the fleet.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_way(self) -> InstanceReference:
        ways = [bool(self.name), bool(self.hostname), self.fleet is not None or self.instance is not None]
        if sum(ways) != 1:
            raise ValueError("name an instance by one of: name, hostname, or fleet + instance")
        if (self.fleet is None) != (self.instance is None):
            raise ValueError("fleet and instance go together: the fleet's name and the host's index in it")
        return self


class BackendOption(Model):
    """Options of one backend (dstack knows them for vastai); checked against the backend chosen."""

    model_config = Model.model_config | {"extra": "allow"}

    type: str = Field(description="The backend these options are for.")

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in known_backend_names():
            raise ValueError(f"unknown backend {value!r}: backends are {', '.join(known_backend_names())}")
        return value


def check_tags(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("tags must be a mapping of KEY: VALUE")
    tags = {}
    for key, item in value.items():
        text = str(item).lower() if isinstance(item, bool) else str(item)
        if isinstance(item, (dict, list)) or not TAG_KEY_RE.match(str(key)):
            raise ValueError(f"tag {key!r}: keys are 1-60 letters, digits, '-' or '_', values plain text")
        if not TAG_VALUE_RE.match(text):
            raise ValueError(f"tag {key}: {text!r} may hold only letters, digits, spaces and . : / = _ - + @ "
                             "(at most 256)")
        tags[str(key)] = text
    return tags


def check_backend_options(options: list[BackendOption] | None) -> list[BackendOption] | None:
    seen: set[str] = set()
    for option in options or []:
        if option.type in seen:
            raise ValueError(f"backend_options has two entries for {option.type!r}")
        seen.add(option.type)
    return options
