"""The `.dstack.yml` task configuration as pydantic models.

Validators turn every compact spelling (`A100:2`, `8GB..`, `3h`, `"3000:7860"`) into one typed,
normalised shape, so the rest of the program never parses strings again. Validation context
(`run_args`, `caller_env`) feeds `${{ run.args }}`, `${{ env.NAME }}` and bare `env` keys.
"""

from __future__ import annotations

import difflib
import os
import posixpath
import re
from enum import Enum
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    SecretStr,
    StrictInt,
    Tag,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
    WithJsonSchema,
)

from dstack_iac.config import grammar
from dstack_iac.config.base import FieldValueError, Model, validation_context
from dstack_iac.config.backend_names import DSTACK_BACKENDS, OWN_BACKENDS, known_backend_names
from dstack_iac.config.interpolation import (
    GROUP_NODE_IP_RE,
    NODE_RANK_REFERENCE,
    env_references,
    interpolate,
    references,
    resolve_node_rank,
    secret_names,
)
from dstack_iac.config.run_policies import (
    DEFAULT_STOP_DURATION,
    GROUP_NAME_RE,
    BackendOption,
    CreationPolicy,
    FleetReference,
    InstanceReference,
    StartupOrder,
    StopCriteria,
    UtilizationPolicy,
    check_backend_options,
    check_tags,
)
from dstack_iac.config.sources import FileMapping, RepoSpec

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,40}$")
VOLUME_STACK_PREFIX = "volume-"  # volumes' stacks share the project with runs' stacks
# Stacks of the project that are not runs: a run's name may not start like them.
RESERVED_STACK_PREFIXES = (VOLUME_STACK_PREFIX, "fleet-", "preview-", "gc-", "storage-", "schedule-")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PYTHON_VERSIONS = ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14")
RESERVED_MOUNT_ROOT = "/workflow"
MAX_NODES = 1024  # a bound on what one run declares (a backend may allow fewer)
# The images dstack picks when a task asks for docker, nvcc, or a container without naming one.
DIND_IMAGE = "dstackai/dind"
BASE_IMAGE = "dstackai/base:0.10-{kind}-ubuntu22.04"


_context = validation_context


# --- resources --------------------------------------------------------------------------------

class IntRange(Model):
    min: int | None = Field(default=None, description="Lower bound (inclusive); unset means none.")
    max: int | None = Field(default=None, description="Upper bound (inclusive); unset means none.")

    def __str__(self) -> str:
        return grammar.format_range(self.min, self.max)

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class MemoryRange(Model):
    """Sizes in GB."""

    min: float | None = Field(default=None, description="Lower bound in GB (inclusive); unset means none.")
    max: float | None = Field(default=None, description="Upper bound in GB (inclusive); unset means none.")

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, MemoryRange):
            return value
        low, high = grammar.parse_memory_range(value)
        return {"min": low, "max": high}

    def __str__(self) -> str:
        return grammar.format_range(self.min, self.max, grammar.format_memory)

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class CPUSpec(Model):
    arch: Literal["x86", "arm"] | None = Field(default=None, description="CPU architecture; any when unset.")
    count: IntRange = Field(default=IntRange(min=2), description="Number of CPUs (a count or a range).")

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, CPUSpec):
            return value
        if isinstance(value, dict) and isinstance(value.get("count"), IntRange):
            return value
        parsed = grammar.parse_cpu(value)
        return {"arch": parsed["arch"], "count": {"min": parsed["min"], "max": parsed["max"]}}

    def __str__(self) -> str:
        return f"{self.arch}:{self.count}" if self.arch else str(self.count)


class GPUSpec(Model):
    vendor: Literal["nvidia", "amd", "google", "intel", "tenstorrent"] | None = Field(default=None, description="GPU vendor.")
    names: list[str] | None = Field(default=None, description="GPU models accepted, e.g. [A100, H100].")
    count: IntRange = Field(default=IntRange(min=1, max=1), description="Number of GPUs per node.")
    memory: MemoryRange | None = Field(default=None, description="Memory per GPU (GB, or a range).")
    total_memory: MemoryRange | None = Field(default=None, description="Memory of all the node's GPUs together.")
    compute_capability: str | None = Field(default=None, description="Minimum CUDA compute capability, e.g. \"8.0\".")

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, GPUSpec) or (isinstance(value, dict) and "names" in value):
            return value  # already normalised
        return grammar.parse_gpu(value)

    def __str__(self) -> str:
        return grammar.format_gpu(self.model_dump())


class DiskSpec(Model):
    size: MemoryRange = Field(default=MemoryRange(min=100), description="Disk size (GB, or a range).")

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, (DiskSpec, dict)):
            return value
        return {"size": value}

    @model_validator(mode="after")
    def _not_empty(self) -> DiskSpec:
        if self.size.max is not None and self.size.max <= 0:
            raise ValueError(f"a disk of {self.size} holds nothing: give a size above 0, e.g. 100GB..")
        return self


class ResourcesSpec(Model):
    cpu: CPUSpec = Field(default=CPUSpec(), description="CPUs per node: a count, a range (2..8) or arch:count (arm:8..).")
    memory: MemoryRange = Field(default=MemoryRange(min=8), description="RAM per node: 16GB, or a range such as 8GB..")
    shm_size: float | None = Field(default=None, description="Shared memory (/dev/shm) of the task's container, in "
                                                             "GB; needs an image.")
    disk: DiskSpec = Field(default=DiskSpec(), description="Disk per node: a size or a range such as 100GB..")
    gpu: GPUSpec | None = Field(default=None, description="GPUs per node: 24GB, A100:2, 1..2, nvidia:24GB:1..2, or "
                                                          "the mapping form; none when unset.")

    @field_validator("shm_size", mode="before")
    @classmethod
    def _shm(cls, value: Any) -> Any:
        return None if value is None else grammar.parse_memory(value)

    @field_validator("gpu", mode="before")
    @classmethod
    def _no_gpu(cls, value: Any) -> Any:
        # `gpu: 0` asks for no GPU, as in dstack.
        return None if value == 0 and not isinstance(value, bool) else value

    def summary(self) -> str:
        """One line for tables: `2..xCPU, 8GB..RAM, 100GB..disk, A100:2`."""
        parts = [f"{self.cpu}xCPU", f"{self.memory}RAM", f"{self.disk.size}disk"]
        if self.gpu:
            parts.append(str(self.gpu))
        return ", ".join(parts)


# --- volumes ----------------------------------------------------------------------------------

def _check_mount_path(path: Any) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"mount path {path!r} must be absolute (start with /)")
    if ".." in path.split("/"):
        raise ValueError(f"mount path {path!r} must not contain '..'")
    normal = posixpath.normpath(path)
    if normal == RESERVED_MOUNT_ROOT or normal.startswith(RESERVED_MOUNT_ROOT + "/"):
        raise ValueError(f"{path!r} is reserved: /workflow holds the run's code; mount elsewhere, e.g. /data")
    return normal


def _check_volume_name(name: Any) -> str:
    if not isinstance(name, str):
        raise ValueError(f"volume name {name!r} must be a string")
    probe = resolve_node_rank(name, 0)
    if "${{" in probe:
        raise ValueError(f"volume name {name!r}: only ${{{{ {NODE_RANK_REFERENCE} }}}} may be used here")
    if not NAME_RE.match(probe):
        raise ValueError(f"volume name {name!r} must be 2-41 lowercase letters, digits or '-', starting with a letter")
    return name


def _split_short_syntax(value: str) -> dict:
    source, sep, target = value.partition(":")
    if not sep or not source or not target:
        raise ValueError(f"{value!r}: the short syntax is name:/path or /instance/path:/path")
    if source.startswith("/"):
        return {"instance_path": source, "path": target}
    return {"name": source, "path": target}


class _Mount(Model):
    """Accepts the short syntax `name:/path` or `/instance/path:/path`."""

    @model_validator(mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _split_short_syntax(value)
        return value


class NetworkVolumeMount(_Mount):
    kind: Literal["network"] = "network"
    name: list[str] = Field(description="The volume's name, or a list of names to pick one from.")
    path: str = Field(description="Where the task sees the volume (absolute).")

    @field_validator("name", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        names = value if isinstance(value, list) else [value]
        if not names:
            raise ValueError("give at least one volume name")
        return [_check_volume_name(n) for n in names]

    _path = field_validator("path")(lambda cls, v: _check_mount_path(v))


class InstanceVolumeMount(_Mount):
    kind: Literal["instance"] = "instance"
    instance_path: str = Field(description="A directory of the node's machine (absolute).")
    path: str = Field(description="Where the task sees it (absolute).")
    optional: bool = Field(default=False, description="Skip the mount when instance_path does not exist.")

    @field_validator("instance_path")
    @classmethod
    def _instance_path(cls, value: str) -> str:
        if not value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"instance path {value!r} must be absolute and must not contain '..'")
        return posixpath.normpath(value)

    _path = field_validator("path")(lambda cls, v: _check_mount_path(v))


def _volume_kind(value: Any) -> str:
    if isinstance(value, str):
        return "instance" if value.startswith("/") else "network"
    if isinstance(value, dict):
        return "instance" if "instance_path" in value else "network"
    return getattr(value, "kind", "network")


VolumeMount = Annotated[
    Union[Annotated[NetworkVolumeMount, Tag("network")], Annotated[InstanceVolumeMount, Tag("instance")]],
    Discriminator(_volume_kind),
]


# --- retry, ports, registry -------------------------------------------------------------------

class RetryEvent(str, Enum):
    NO_CAPACITY = "no-capacity"
    INTERRUPTION = "interruption"
    ERROR = "error"


class Retry(Model):
    on_events: list[RetryEvent] = Field(default_factory=lambda: list(RetryEvent),
                                        description="Which failures are retried: no-capacity (the cloud had none), "
                                                    "interruption (a node was lost), error (the commands failed).")
    duration: int = Field(default=3600, description="How long to keep retrying, from the run's start: seconds, or "
                                                    "30s, 15m, 3h, 2d, 1w.")

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return grammar.parse_duration(value)

    @field_validator("on_events")
    @classmethod
    def _events(cls, value: list[RetryEvent]) -> list[RetryEvent]:
        if not value:
            raise ValueError("on_events needs at least one of no-capacity, interruption, error")
        return list(dict.fromkeys(value))


class PortMapping(Model):
    local_port: int | None = Field(default=None, description="The port on this machine; any free one when unset.")
    container_port: int = Field(description="The port the task listens on, on node 0.")

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"{value!r} is not a port")
        if isinstance(value, int):
            return {"local_port": value, "container_port": value}
        if isinstance(value, str):
            local, sep, remote = value.partition(":")
            if not sep:
                local, remote = value, value
            try:
                return {
                    "local_port": None if local.strip() == "*" else int(local),
                    "container_port": int(remote),
                }
            except ValueError:
                raise ValueError(
                    f"{value!r} is not a port mapping: write 8080, \"3000:7860\" (local:remote) or \"*:8080\""
                ) from None
        return value

    @model_validator(mode="after")
    def _ranges(self) -> PortMapping:
        for port in (self.local_port, self.container_port):
            if port is not None and not 1 <= port <= 65535:
                raise ValueError(f"port {port} is outside 1..65535")
        return self

    def __str__(self) -> str:
        local = "*" if self.local_port is None else self.local_port
        return f"{local}:{self.container_port}"


class RegistryAuth(Model):
    username: str = Field(description="Registry user name.")
    password: SecretStr = Field(description="Registry password or token; ${{ env.NAME }} keeps it out of the file.")

    @field_validator("username", "password", mode="before")
    @classmethod
    def _references(cls, value: Any, info: ValidationInfo) -> Any:
        # `password: ${{ env.REGISTRY_TOKEN }}` keeps the secret out of the file.
        if isinstance(value, str):
            # `${{ secrets.NAME }}` stays: the secret store resolves it when the run is planned.
            secret_names(value)
            return interpolate(value, None, _context(info).get("caller_env", os.environ), keep_secrets=True)
        return value

    @field_serializer("password", when_used="json")
    def _mask(self, value: SecretStr) -> str:
        return str(value)  # "**********": secrets never leave the model in clear text


# --- profile fields and the task --------------------------------------------------------------

class SpotPolicy(str, Enum):
    SPOT = "spot"
    ON_DEMAND = "on-demand"
    AUTO = "auto"


def _backend_name(value: Any) -> Any:
    if isinstance(value, str) and value not in known_backend_names():
        close = difflib.get_close_matches(value, known_backend_names(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown backend {value!r}: {hint}backends are {', '.join(known_backend_names())}")
    return value


Backend = Annotated[str, BeforeValidator(_backend_name),
                    WithJsonSchema({"type": "string", "enum": [*DSTACK_BACKENDS, *OWN_BACKENDS]})]


class ProfileFields(Model):
    """Fields a task shares with `.dstack/profiles.yml` and the CLI."""

    backends: list[Backend] | None = Field(default=None, description="Backends to consider; when unset, local "
                                                                      "(and the backends that need no account).")
    regions: list[str] | None = Field(default=None, description="Cloud regions to consider; all when unset.")
    availability_zones: list[str] | None = Field(default=None, description="Zones to consider; all when unset.")
    instance_types: list[str] | None = Field(default=None, description="Instance types to consider; all when unset.")
    spot_policy: SpotPolicy | None = Field(default=None, description="spot, on-demand or auto (default on-demand).")
    max_price: float | None = Field(default=None, gt=0, description="Maximum price per node, $/hour.")
    max_duration: int | None = Field(default=None, description="Stop the run after this long: seconds, 30s, 15m, "
                                                                "3h, 2d, 1w, or off (the default).")
    retry: Retry | None = Field(default=None, description="Re-provision and re-run on the given events; true means "
                                                          "all of them for an hour.")
    stop_duration: int | None = Field(default=DEFAULT_STOP_DURATION, description="On stop, how long the commands "
                                                                                "get after SIGTERM before SIGKILL "
                                                                                "(default 5m; off: never forced).")
    startup_order: StartupOrder = Field(default=StartupOrder.ANY, description="any (default), master-first "
                                                                              "(workers start once the master's "
                                                                              "commands have started) or "
                                                                              "workers-first (the master starts "
                                                                              "once every worker's have).")
    stop_criteria: StopCriteria = Field(default=StopCriteria.ALL_DONE, description="all-done (default: the run "
                                                                                  "ends when every node has finished) or "
                                                                                  "master-done (it ends, stopping "
                                                                                  "the workers, when the master "
                                                                                  "exits 0).")
    utilization_policy: UtilizationPolicy | None = Field(default=None, description="Stop the run when every GPU "
                                                                                   "stays below min_gpu_utilization "
                                                                                   "for time_window.")
    reservation: str | None = Field(default=None, description="A capacity reservation to run in (AWS capacity "
                                                              "reservation id, GCP reservation name).")
    tags: dict[str, str] | None = Field(default=None, description="Tags put on the run's stack and on every cloud "
                                                                  "resource it creates.")
    creation_policy: CreationPolicy | None = Field(default=None, description="reuse-or-create (default), or reuse: "
                                                                             "only machines that already exist (an "
                                                                             "SSH fleet's hosts).")
    idle_duration: int | None = Field(default=None, description="How long dstack keeps a machine idle for reuse; "
                                                                "dstack-iac deletes a run's machines when it ends, so "
                                                                "only 0 can be honoured.")
    fleets: list[FleetReference] | None = Field(default=None, description="Run only on these fleets (SSH fleets "
                                                                          "created with `dstack-iac fleet create`).")
    instances: list[InstanceReference] | None = Field(default=None, min_length=1, description="Run only on these "
                                                                                              "existing machines.")
    backend_options: list[BackendOption] | None = Field(default=None, description="Options of a backend (dstack "
                                                                                  "defines them for vastai).")

    @field_validator("max_duration", mode="before")
    @classmethod
    def _max_duration(cls, value: Any) -> Any:
        return None if value is None else grammar.parse_duration(value, allow_off=True)

    @field_validator("stop_duration", mode="before")
    @classmethod
    def _stop_duration(cls, value: Any) -> Any:
        if value is None or value is True:
            return DEFAULT_STOP_DURATION
        if value is False:
            return None
        return grammar.parse_duration(value, allow_off=True)

    @field_validator("idle_duration", mode="before")
    @classmethod
    def _idle_duration(cls, value: Any) -> Any:
        if value is None or value is True:
            return None
        if value is False or value == -1:
            return -1  # dstack's "off": keep idle machines forever
        seconds = grammar.parse_duration(value, allow_off=True)
        return -1 if seconds is None else seconds

    _tags = field_validator("tags", mode="before")(lambda cls, v: check_tags(v))
    _backend_options = field_validator("backend_options")(lambda cls, v: check_backend_options(v))

    @field_validator("retry", mode="before")
    @classmethod
    def _retry(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False:
            return None
        return value

    @field_validator("backends", "regions", "availability_zones", "instance_types", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


PROFILE_FIELD_NAMES = tuple(ProfileFields.model_fields)


def check_commands(value: Any, info: ValidationInfo) -> Any:
    """Commands are strings whose `${{ }}` references are checked now; the node script gets
    their values as data."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return value
    caller_env = _context(info).get("caller_env", os.environ)
    for index, command in enumerate(value):
        if not isinstance(command, str):
            raise FieldValueError((index,), f"a command must be a string, got {command!r} (quote it)")
        try:
            env_references(command, caller_env)
        except ValueError as exc:
            raise FieldValueError((index,), str(exc)) from None
    return value


class NodeGroup(Model):
    """Nodes of one kind in a heterogeneous task: their own count, resources, commands, ports."""

    name: str | None = Field(default=None, description="1-40 lowercase letters, digits or '-'; the group's "
                                                       "position (0, 1, ...) when unset.")
    nodes: StrictInt = Field(default=1, ge=1, le=MAX_NODES, description="Number of nodes in the group.")
    resources: ResourcesSpec = Field(default=ResourcesSpec(), description="What each node of the group needs "
                                                                          "(not inherited from the task's).")
    commands: list[str] = Field(default_factory=list, description="The group's commands (needed unless the task "
                                                                  "has an image).")
    ports: list[PortMapping] = Field(default_factory=list, description="Ports of the group's first node "
                                                                       "forwarded while attached.")

    _commands = field_validator("commands", mode="before")(lambda cls, value, info: check_commands(value, info))

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not GROUP_NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a group name: 1-40 lowercase letters, digits or '-'")
        return value

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, value: list[PortMapping]) -> list[PortMapping]:
        check_unique_ports(value)
        return value


def _unix_user(value: Any) -> Any:
    """dstack's `user`: NAME_OR_ID[:GROUP_OR_ID]."""
    if value is None:
        return None
    text = str(value)
    parts = text.split(":")
    if len(parts) > 2 or not all(parts) or any(p.startswith("-") or not re.match(r"^[\w.-]+$", p) for p in parts):
        raise ValueError(f"user {text!r}: write NAME or NAME:GROUP (names or numeric ids)")
    return text


class TaskConfiguration(ProfileFields):
    type: Literal["task"] = Field(description="Always `task` for a task file.")
    name: str | None = Field(default=None, description="Run name; generated when unset.")
    image: str | None = Field(default=None, description="Docker image the commands run in (cloud backends).")
    python: str | None = Field(default=None, description="Python version of each node's virtualenv, 3.9 .. 3.14; "
                                                         "the caller's when unset. Exclusive with image.")
    commands: list[str] = Field(default_factory=list, description="Shell commands run in order on every node; the "
                                                                  "first that fails ends the node's script.")
    build: list[str] = Field(default_factory=list, description="Commands run before `commands`, only with --build.")
    working_dir: str | None = Field(default=None, description="Where the commands run: relative paths (and paths "
                                                              "under /workflow) are inside the uploaded working "
                                                              "directory.")
    shell: str | None = Field(default=None, description="The shell that runs the commands: bash (default), sh, or "
                                                        "an absolute path.")
    entrypoint: str | None = Field(default=None, description="Run this instead of a shell: the commands become its "
                                                             "arguments (as docker's entrypoint and command).")
    registry_auth: RegistryAuth | None = Field(default=None, description="Credentials for pulling a private image.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables: KEY=VALUE, or KEY to take "
                                                                  "the value from your environment.")
    ports: list[PortMapping] = Field(default_factory=list, description="Ports of node 0 forwarded to this machine "
                                                                       "while attached: 8080, 3000:7860, *:8080.")
    nodes: StrictInt = Field(default=1, ge=1, le=MAX_NODES, description="Number of nodes (a cluster when more than "
                                                                        f"one), at most {MAX_NODES}.")
    resources: ResourcesSpec = Field(default=ResourcesSpec(), description="What each node needs: cpu, memory, "
                                                                          "shm_size, disk, gpu.")
    volumes: list[VolumeMount] = Field(default_factory=list, description="Volumes mounted on every node: "
                                                                         "name:/path (network) or /host:/path.")

    class Schedule(Model):
        cron: list[str] = Field(description="When to start a run, in UTC: one cron expression (minute hour "
                                            "day-of-month month day-of-week, e.g. \"0 3 * * *\") or a list.")

        @field_validator("cron", mode="before")
        @classmethod
        def _cron(cls, value: Any) -> Any:
            from dstack_iac.config.schedule import CronError, cron_expressions  # croniter loads only when used

            try:
                return cron_expressions(value)
            except CronError as exc:
                raise (FieldValueError((exc.index,), str(exc)) if exc.index is not None else ValueError(str(exc)))

    schedule: Schedule | None = Field(default=None, description="Run the task at these times (UTC): `run` "
                                                                  "registers it and returns; `stop NAME` unregisters.")
    repos: list[RepoSpec] = Field(default_factory=list, description="A git repo to put on every node (at most "
                                                                    "one): `.`, `..:/repo`, a URL, or the "
                                                                    "mapping form; instead of the working "
                                                                    "directory.")
    files: list[FileMapping] = Field(default_factory=list, description="Files or directories copied to every "
                                                                       "node before the commands: LOCAL[:PATH].")
    groups: list[NodeGroup] | None = Field(default=None, description="Heterogeneous nodes: groups with their own "
                                                                     "nodes, resources, commands and ports; "
                                                                     "exclusive with nodes, commands and ports.")
    nvcc: bool | None = Field(default=None, description="Use an image with the CUDA compiler (nvcc); exclusive "
                                                        "with image and docker.")
    docker: bool | None = Field(default=None, description="Docker inside the task (Docker-in-Docker, privileged); "
                                                          "exclusive with image, python and nvcc.")
    privileged: bool = Field(default=False, description="Run the task's container privileged.")
    user: str | None = Field(default=None, description="Run the commands as this user: NAME or NAME:GROUP (names or "
                                                       "ids); the image's user when unset.")
    single_branch: bool | None = Field(default=None, description="Clone only the repo's branch (default for "
                                                                 "tasks: yes).")
    priority: StrictInt | None = Field(default=None, ge=0, le=100, description="0..100 (default 0): when runs wait "
                                                                               "for capacity, the higher gets it "
                                                                               "first.")
    dstack: bool = Field(default=False, description="dstack: reach the dstack server from the run; dstack-iac has "
                                                    "no server (the Pulumi backend takes its place).")
    setup: list[str] = Field(default_factory=list, description="Deprecated in dstack: commands run before "
                                                               "`commands`; write them at the start of commands.")
    home_dir: str | None = Field(default=None, description="Deprecated in dstack, where it has no effect.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a valid name: 2-41 lowercase letters, digits or '-', starting with a letter"
            )
        reserved = next((p for p in RESERVED_STACK_PREFIXES if value is not None and value.startswith(p)), None)
        if reserved:
            raise ValueError(f"{value!r}: run names starting with {reserved!r} are reserved for the stacks of "
                             "volumes, fleets and previews")
        return value

    @field_validator("resources", mode="before")
    @classmethod
    def _resources(cls, value: Any) -> Any:
        # `resources:` with nothing indented under it: its keys most likely went to the top level.
        if value is None:
            raise ValueError("resources is empty: indent its fields (cpu, memory, shm_size, disk, gpu) under it")
        return value

    @field_validator("nodes", mode="before")
    @classmethod
    def _nodes(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"nodes must be a whole number written without quotes, e.g. 2 (got {value!r})")
        return value

    @field_validator("python", mode="before")
    @classmethod
    def _python(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, float):
            # YAML reads 3.10 as the float 3.1
            major, _, minor = repr(value).partition(".")
            value = f"{major}.{minor}0" if minor == "1" else f"{major}.{minor}"
        if isinstance(value, bool) or not isinstance(value, str):
            raise ValueError(f"python must be a version like \"3.11\", got {value!r}")
        if value not in PYTHON_VERSIONS:
            raise ValueError(f"python {value!r} is not supported: use one of {', '.join(PYTHON_VERSIONS)}")
        return value

    @field_validator("working_dir")
    @classmethod
    def _working_dir(cls, value: str | None) -> str | None:
        if value is None:
            return None
        normal = posixpath.normpath(value.strip())
        if not value.strip() or normal.split("/")[0] == ".." or "\n" in value or "\0" in value:
            raise ValueError(f"working_dir {value!r} must be a path inside the working directory or an absolute path")
        return normal

    _commands = field_validator("commands", "build", "setup", mode="before")(
        lambda cls, value, info: check_commands(value, info))

    _user = field_validator("user", mode="before")(lambda cls, v: _unix_user(v))

    @field_validator("repos")
    @classmethod
    def _one_repo(cls, value: list[RepoSpec]) -> list[RepoSpec]:
        if len(value) > 1:
            raise FieldValueError((1,), "one repo per run (as in dstack): put the others in files, or clone them "
                                        "in commands")
        return value

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[NodeGroup] | None) -> list[NodeGroup] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("groups cannot be empty: give at least one group, or use nodes")
        names = [group.name or str(index) for index, group in enumerate(value)]
        _reject_duplicates(names, lambda name: name, "group name {}")
        if sum(group.nodes for group in value) > MAX_NODES:
            raise ValueError(f"the groups have {sum(g.nodes for g in value)} nodes in all, over {MAX_NODES}")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any, info: ValidationInfo) -> Any:
        return parse_env(value, _context(info).get("caller_env", os.environ))

    @field_validator("ports")
    @classmethod
    def _unique_ports(cls, value: list[PortMapping]) -> list[PortMapping]:
        check_unique_ports(value)
        return value

    @field_validator("volumes")
    @classmethod
    def _unique_mounts(cls, value: list) -> list:
        _reject_duplicates(value, lambda m: m.path, "mount path {}")
        return value

    @model_validator(mode="after")
    def _runnable(self) -> TaskConfiguration:
        if self.image and self.python:
            raise FieldValueError(("image",), "python and image are mutually exclusive: remove one of them")
        if self.docker:
            for other in ("image", "python", "nvcc"):
                if getattr(self, other):
                    raise FieldValueError(("docker",), f"docker and {other} are mutually exclusive: docker: true "
                                                       "brings its own image (Docker-in-Docker)")
        if self.nvcc and self.image:
            raise FieldValueError(("nvcc",), "nvcc and image are mutually exclusive: nvcc picks an image with the "
                                             "CUDA compiler; with your own image, install it there")
        if self.registry_auth and not self.image:
            raise FieldValueError(("registry_auth",), "registry_auth is for pulling `image`: there is no image to "
                                                      "pull (add image, or remove registry_auth)")
        if self.groups is not None:
            for field_name in ("nodes", "commands", "ports", "entrypoint"):
                if field_name in self.model_fields_set and getattr(self, field_name) not in (None, []):
                    raise FieldValueError((field_name,), f"{field_name} and groups are mutually exclusive: give each "
                                                         f"group its own {field_name}" if field_name != "entrypoint"
                                                         else "entrypoint cannot be used with groups")
            for index, group in enumerate(self.groups):
                if not group.commands and not self.image:
                    raise FieldValueError(("groups", index, "commands"), "each group needs commands (or the task "
                                                                         "an image with its own entrypoint)")
        elif not self.commands and not self.image and not self.docker:
            raise FieldValueError(("commands",), "a task needs commands (or an image with its own entrypoint)")
        self.check_group_references()
        return self

    def check_group_references(self) -> None:
        """`${{ groups[I].nodes[J].IP_ADDRESS }}` must name a node that exists."""
        sizes = [group.nodes for group in self.node_groups]
        places = [(("commands", i), c) for i, c in enumerate(self.commands)] + [
            (("groups", g, "commands", i), c) for g, group in enumerate(self.groups or []) for i, c in enumerate(group.commands)]
        for where, command in places:
            for reference in references(command):
                match = GROUP_NODE_IP_RE.match(reference.name)
                if match and not reference.escaped:
                    group, node = int(match.group(1)), int(match.group(2))
                    if group >= len(sizes) or node >= sizes[group]:
                        raise FieldValueError(where, f"${{{{ {reference.name} }}}} names no node: the task has "
                                                     f"{len(sizes)} group(s) of {', '.join(map(str, sizes))} node(s)")

    @property
    def container_image(self) -> str | None:
        """The image the commands run in where a backend has containers, as dstack chooses it:
        `image`; Docker-in-Docker for `docker`; the CUDA devel image for `nvcc`; the base image
        when only a container can honour `user` or `privileged`; else none (the machine itself)."""
        if self.image:
            return self.image
        if self.docker:
            return DIND_IMAGE
        if self.nvcc:
            return BASE_IMAGE.format(kind="devel")
        if self.user is not None or self.privileged:
            return BASE_IMAGE.format(kind="base")
        return None

    @property
    def node_groups(self) -> list[NodeGroup]:
        """The groups, or the one group the top-level nodes, resources, commands and ports make."""
        if self.groups is not None:
            return [group if group.name else group.model_copy(update={"name": str(index)})
                    for index, group in enumerate(self.groups)]
        return [NodeGroup.model_construct(name="0", nodes=self.nodes, resources=self.resources,
                                          commands=self.commands, ports=self.ports)]

    @property
    def total_nodes(self) -> int:
        return sum(group.nodes for group in self.node_groups)

    def group_of(self, rank: int) -> tuple[int, NodeGroup]:
        """The group node `rank` belongs to (ranks run through the groups in order), by index."""
        first = 0
        for index, group in enumerate(self.node_groups):
            if rank < first + group.nodes:
                return index, group
            first += group.nodes
        raise IndexError(f"rank {rank} is beyond the task's {first} nodes")

    def commands_of(self, rank: int) -> list[str]:
        return self.group_of(rank)[1].commands

    @property
    def all_commands(self) -> list[str]:
        return [*self.setup, *self.build, *(c for group in self.node_groups for c in group.commands)]


def parse_env(value: Any, caller_env) -> dict[str, str]:
    """`[KEY=VALUE, KEY=, KEY]` or `{KEY: VALUE}` -> dict; a bare KEY takes the caller's value."""
    if value is None:
        return {}
    items: list[tuple[Any, str, Any]]
    if isinstance(value, list):
        items = []
        for index, entry in enumerate(value):
            if not isinstance(entry, str):
                raise FieldValueError((index,), f"{entry!r}: write KEY=VALUE, KEY= or KEY")
            key, sep, val = entry.partition("=")
            items.append((index, key.strip(), val if sep else None))
    elif isinstance(value, dict):
        items = [(key, str(key), val) for key, val in value.items()]
    else:
        raise ValueError("env must be a list of KEY=VALUE or a mapping of KEY: VALUE")
    env: dict[str, str] = {}
    for where, key, val in items:
        if not ENV_KEY_RE.match(key):
            raise FieldValueError((where,), f"{key!r} is not a valid variable name")
        if key in env:
            raise FieldValueError((where,), f"{key} is set twice")
        if val is None:
            if key not in caller_env:
                raise FieldValueError(
                    (where,), f"{key} has no value and is not set in your environment: export it or write {key}=VALUE"
                )
            val = caller_env[key]
        elif isinstance(val, (dict, list)):
            raise FieldValueError((where,), f"the value of {key} must be a string or number")
        env[key] = str(val).lower() if isinstance(val, bool) else str(val)
        try:
            secret_names(env[key])
        except ValueError as exc:
            raise FieldValueError((where,), str(exc)) from None
    return env


def check_unique_ports(ports: list[PortMapping]) -> None:
    _reject_duplicates(ports, lambda p: p.container_port, "remote port {}")
    _reject_duplicates([p for p in ports if p.local_port is not None], lambda p: p.local_port, "local port {}")


def _reject_duplicates(items: list, key, what: str) -> None:
    seen: dict = {}
    for index, item in enumerate(items):
        value = key(item)
        if value in seen:
            raise FieldValueError(
                (index,), f"{what.format(value)} is given twice (items {seen[value]} and {index})"
            )
        seen[value] = index


# --- volumes ----------------------------------------------------------------------------------

class VolumeConfiguration(Model):
    """`type: volume`: a network volume that outlives runs (its own long-lived stack)."""

    type: Literal["volume"] = Field(description="Always `volume` for a volume file.")
    name: str = Field(description="2-41 lowercase letters, digits or '-'; tasks mount it by this name.")
    backend: Backend = Field(description="Where the volume lives: local, aws or gcp.")
    region: str | None = Field(default=None, description="Required for aws and gcp.")
    availability_zone: str | None = Field(default=None, description="Default: the region's first zone (aws "
                                                                          "<region>a, gcp <region>-a).")
    size: float | None = Field(default=None, description="GB; accepts 100GB, 1TB. Required unless volume_id is set "
                                                         "(optional for local: a directory).")
    volume_id: str | None = Field(default=None, description="Register an existing disk instead of creating one.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a valid name: 2-41 lowercase letters, digits or '-', starting with a letter")
        return value

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return None if value is None else grammar.parse_memory(value)

    @model_validator(mode="after")
    def _one_source(self) -> "VolumeConfiguration":
        # What a backend requires beyond this (a region, a size) is its own check (Backend.check_volume).
        if self.size is not None and self.volume_id:
            raise FieldValueError(("volume_id",), "give either size (create a disk) or volume_id (register one)")
        return self
