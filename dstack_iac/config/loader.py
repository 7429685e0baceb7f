"""From files and flags to one validated `Task`: discovery, profiles, CLI overrides, and errors
that name the file, line, column and field to fix."""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from dstack_iac.config.errors import ConfigError, ConfigIssue
from dstack_iac.config.interpolation import env_references, interpolate, secret_names
from dstack_iac.config.models import (
    FieldValueError,
    GPUSpec,
    NodeGroup,
    PortMapping,
    ProfileFields,
    check_unique_ports,
    parse_env,
    SpotPolicy,
    TaskConfiguration,
    VolumeConfiguration,
)
from dstack_iac.config.profiles import Profile, ProfilesFile, load_profiles_source, profile_files
from dstack_iac.config.yaml_source import YamlSource, dotted, load_yaml, read_text_file

CONFIG_SUFFIX = ".dstack.yml"


class Overrides(BaseModel):
    """Command-line values that take precedence over the file and the profile."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    env: list[str] = []
    ports: list[str] = []
    gpu: str | None = None
    cpu: str | None = None
    memory: str | None = None
    disk: str | None = None
    backends: list[str] = []
    regions: list[str] = []
    instance_types: list[str] = []
    spot_policy: str | None = None
    max_price: float | None = None
    max_duration: str | None = None
    retry: bool | None = None
    retry_duration: str | None = None
    build: bool = False
    profile: str | None = None
    no_profile: bool = False


# Which flag sets which field, so errors in a flag's value name the flag.
_FLAGS = {
    ("name",): "--name", ("env",): "--env", ("ports",): "--port",
    ("resources", "gpu"): "--gpu", ("resources", "cpu"): "--cpu", ("resources", "memory"): "--memory",
    ("resources", "disk"): "--disk", ("backends",): "--backend", ("regions",): "--region",
    ("instance_types",): "--instance-type", ("spot_policy",): "--spot/--on-demand/--spot-auto",
    ("max_price",): "--max-price", ("max_duration",): "--max-duration", ("retry",): "--retry/--retry-duration",
}


@dataclass
class Task:
    """A task ready to plan: the validated configuration plus where and how it was asked for.
    `env_references` holds the caller's values of the commands' `${{ env.NAME }}` references."""

    configuration: TaskConfiguration
    configuration_path: Path
    repo_dir: Path
    run_args: list[str] = field(default_factory=list)
    profile_name: str | None = None
    build: bool = False
    env_references: dict[str, str] = field(default_factory=dict, repr=False)
    source: YamlSource | None = field(default=None, repr=False)
    warnings: list[str] = field(default_factory=list)

    def where(self, field_name: str) -> str:
        """`file:line:column` of a field (dotted, e.g. `resources.shm_size`, `files[1]`), for
        errors found after loading (a backend refusing it)."""
        if self.source is None:
            return self.display_path
        path = tuple(int(p) if p.isdigit() else p for p in field_name.replace("]", "").replace("[", ".").split("."))
        return _where(self.source, path)

    @property
    def secret_names(self) -> list[str]:
        """Every `${{ secrets.NAME }}` the task refers to (env values, registry_auth)."""
        texts = list(self.configuration.env.values())
        auth = self.configuration.registry_auth
        if auth is not None:
            texts += [auth.username, auth.password.get_secret_value()]
        return sorted({name for text in texts for name in secret_names(text)})

    def display_commands(self, commands: list[str]) -> list[str]:
        """The commands as they will run, references written out (for people, not for a shell)."""
        return [interpolate(command, self.run_args, self.env_references) for command in commands]

    @property
    def display_path(self) -> str:
        try:
            return str(self.configuration_path.relative_to(self.repo_dir))
        except ValueError:
            return str(self.configuration_path)


# Where each part of the merged data came from: a YAML source and the path inside it, or a flag.
@dataclass(frozen=True)
class _Origin:
    source: YamlSource | None
    path: tuple = ()
    flag: str | None = None


FLAGS_ONLY_TASK = "type: task\ncommands: ['true']\n"


def discover_configuration(repo_dir: Path, file: Path | None) -> Path:
    """`-f FILE`, else `.dstack.yml` in the run directory; names must end with `.dstack.yml`."""
    if file is None:
        path = repo_dir / ".dstack.yml"
        if not path.is_file():
            raise ConfigError([ConfigIssue(str(path), None, None, "",
                                           "no configuration: create .dstack.yml here or pass -f FILE.dstack.yml")])
        return path
    path = file if file.is_absolute() else Path.cwd() / file
    if not (path.name == ".dstack.yml" or path.name.endswith(CONFIG_SUFFIX)):
        raise ConfigError([ConfigIssue(str(file), None, None, "",
                                       f"a configuration file's name must end with {CONFIG_SUFFIX}, "
                                       f"e.g. {path.stem}{CONFIG_SUFFIX}")])
    if not path.is_file():
        raise ConfigError([ConfigIssue(str(file), None, None, "", "file not found")])
    return path


def load_task(
    repo_dir: Path,
    file: Path | None = None,
    overrides: Overrides | None = None,
    run_args: Sequence[str] = (),
    caller_env: Mapping[str, str] | None = None,
    home: Path | None = None,
    flags_only_if_missing: bool = False,
) -> Task:
    """With `flags_only_if_missing` (for `offers`), no `-f` and no `.dstack.yml` means an empty
    task shaped by the flags alone."""
    overrides = overrides or Overrides()
    caller_env = dict(os.environ if caller_env is None else caller_env)
    if flags_only_if_missing and file is None and not (repo_dir / ".dstack.yml").is_file():
        path, source = repo_dir / "(flags)", load_yaml(FLAGS_ONLY_TASK, "(command-line flags)")
    else:
        path = discover_configuration(repo_dir, file)
        source = load_yaml(read_configuration(path), _display(path))
    if not isinstance(source.data, dict):
        raise ConfigError([ConfigIssue(source.file, 1, 1, "", "expected a mapping of fields, e.g. `type: task`")])
    kind = source.data.get("type")
    if kind != "task":
        line, column = source.position(("type",))
        what = "is missing" if kind is None else f"is {kind!r}"
        raise ConfigError([ConfigIssue(source.file, line, column, "type",
                                       f"type {what}: this file must say `type: task`")])

    merged: dict[str, Any] = {}
    origins: dict[tuple, _Origin] = {(): _Origin(source, ())}
    profile = None if overrides.no_profile else _select_profile(repo_dir, overrides.profile, home)
    if profile is not None:
        profile_model, profile_source, index = profile
        for name in profile_model.model_fields_set & set(ProfileFields.model_fields):
            merged[name] = profile_source.data["profiles"][index][name]
            origins[(name,)] = _Origin(profile_source, ("profiles", index, name))
    for key, value in source.data.items():
        merged[key] = copy.deepcopy(value)
        origins[(key,)] = _Origin(source, (key,))
    _apply_overrides(merged, origins, overrides)

    context = {"run_args": list(run_args), "caller_env": caller_env, "config_dir": path.parent}
    try:
        configuration = TaskConfiguration.model_validate(merged, context=context)
    except ValidationError as exc:
        raise ConfigError(_issues(exc, merged, origins, source)) from None
    configuration = _apply_list_overrides(configuration, overrides, caller_env, source)
    if configuration.spot_policy is None:
        configuration.spot_policy = SpotPolicy.ON_DEMAND
    references: dict[str, str] = {}
    for command in configuration.all_commands:
        references.update(env_references(command, caller_env))
    return Task(
        configuration=configuration,
        configuration_path=path,
        repo_dir=repo_dir.resolve(),
        run_args=list(run_args),
        profile_name=profile[0].name if profile else None,
        build=overrides.build,
        env_references=references,
        source=source,
        warnings=_deprecations(configuration, source),
    )


def _deprecations(configuration: TaskConfiguration, source: YamlSource) -> list[str]:
    """What dstack itself deprecates: accepted, and said once."""
    warnings = []
    if configuration.setup:
        warnings.append(f"{_where(source, ('setup',))}: setup is deprecated in dstack; its commands run before "
                        "`commands` (move them to the start of commands)")
    if configuration.home_dir is not None:
        warnings.append(f"{_where(source, ('home_dir',))}: home_dir is deprecated in dstack and has no effect there "
                        "or here; remove it")
    return warnings


def _where(source: YamlSource, path: tuple) -> str:
    line, column = source.position(path, key=True)
    return f"{source.file}:{line}:{column}" if line is not None else source.file


def read_configuration(path: Path) -> str:
    return read_text_file(path, _display(path))


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _select_profile(repo_dir: Path, wanted: str | None, home: Path | None):
    files = profile_files(repo_dir, home)
    issues: list[ConfigIssue] = []
    loaded = []
    for path in files:
        profile_source = load_profiles_source(path)
        try:
            parsed = ProfilesFile.model_validate(profile_source.data or {})
        except ValidationError as exc:
            issues.extend(_issues(exc, profile_source.data, {(): _Origin(profile_source, ())}, profile_source))
            continue
        loaded.append((parsed, profile_source))
    if issues:
        raise ConfigError(issues)
    for parsed, profile_source in loaded:
        for index, profile in enumerate(parsed.profiles):
            if (wanted is not None and profile.name == wanted) or (wanted is None and profile.default):
                return profile, profile_source, index
    if wanted is not None:
        looked = ", ".join(str(p) for p in files) or f"{repo_dir / '.dstack/profiles.yml'} or ~/.dstack/profiles.yml"
        raise ConfigError([ConfigIssue("--profile", None, None, "profile",
                                       f"no profile named {wanted!r} in {looked}")])
    return None


def _apply_overrides(merged: dict, origins: dict, overrides: Overrides) -> None:
    def put(path: tuple, value: Any) -> None:
        target = merged
        for part in path[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[path[-1]] = value
        origins[path] = _Origin(None, path, _FLAGS[path])

    for path, value in (
        (("name",), overrides.name),
        (("resources", "gpu"), overrides.gpu),
        (("resources", "cpu"), overrides.cpu),
        (("resources", "memory"), overrides.memory),
        (("resources", "disk"), overrides.disk),
        (("backends",), overrides.backends or None),
        (("regions",), overrides.regions or None),
        (("instance_types",), overrides.instance_types or None),
        (("spot_policy",), overrides.spot_policy),
        (("max_price",), overrides.max_price),
        (("max_duration",), overrides.max_duration),
    ):
        if value is not None:
            put(path, value)
    if overrides.retry is False:
        put(("retry",), False)
    elif overrides.retry_duration is not None:
        put(("retry",), {"duration": overrides.retry_duration})
    elif overrides.retry:
        put(("retry",), True)


def _apply_list_overrides(
    configuration: TaskConfiguration, overrides: Overrides, caller_env: Mapping[str, str], source: YamlSource
) -> TaskConfiguration:
    """`--env` and `--port` add to (or replace single entries of) the file's lists."""
    if not overrides.env and not overrides.ports:
        return configuration
    flag = "--env"
    try:
        env = {**configuration.env, **parse_env(overrides.env, caller_env)}
        flag = "--port"
        extra_ports = [PortMapping.model_validate(p) for p in overrides.ports]
        replaced = {p.container_port for p in extra_ports}
        ports = [p for p in configuration.ports if p.container_port not in replaced] + extra_ports
        check_unique_ports(ports)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError([ConfigIssue(source.file, None, None, flag.lstrip("-"), message, source=flag)]) from None
    except ValueError as exc:
        raise ConfigError([ConfigIssue(source.file, None, None, flag.lstrip("-"), str(exc), source=flag)]) from None
    return configuration.model_copy(update={"env": env, "ports": ports})


# --- translating pydantic errors --------------------------------------------------------------

def _issues(exc: ValidationError, data: Any, origins: dict, default_source: YamlSource) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        original = (error.get("ctx") or {}).get("error")
        if isinstance(original, FieldValueError):
            loc = loc + original.subpath
        data_path, field_path = _walk(loc, data)
        origin = _origin_for(data_path, origins)
        message = _message(error, field_path)
        if origin is None or origin.source is None:
            flag = origin.flag if origin else None
            issues.append(ConfigIssue(default_source.file, None, None, dotted(field_path), message, source=flag))
            continue
        inner = origin.path + data_path[len(_origin_key(data_path, origins)):]
        is_key = error["type"] in ("extra_forbidden", "missing")
        line, column = origin.source.position(inner, key=is_key)
        issues.append(ConfigIssue(origin.source.file, line, column, dotted(field_path), message))
    return sorted(issues, key=lambda i: (i.file, i.line or 0, i.column or 0))


def _walk(loc: tuple, data: Any) -> tuple[tuple, tuple]:
    """Split pydantic's location into the path inside the data and the user-facing field path.

    Pydantic adds union tags and validator names to locations; they are not in the data and are
    dropped, except a final name that is missing from the data (a required field).
    """
    data_path: list = []
    field_path: list = []
    current = data
    for index, part in enumerate(loc):
        if isinstance(current, dict) and part in current:
            current = current[part]
            data_path.append(part)
            field_path.append(part)
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
            data_path.append(part)
            field_path.append(part)
        elif index == len(loc) - 1 and isinstance(part, str) and isinstance(current, dict):
            field_path.append(part)
    return tuple(data_path), tuple(field_path)


def _origin_key(path: tuple, origins: dict) -> tuple:
    for depth in range(len(path), -1, -1):
        if path[:depth] in origins:
            return path[:depth]
    return ()


def _origin_for(path: tuple, origins: dict) -> _Origin | None:
    return origins.get(_origin_key(path, origins))


_FIELD_NAMES = sorted(
    set(TaskConfiguration.model_fields) | {"cpu", "memory", "shm_size", "disk", "gpu", "vendor", "name", "count",
                                           "total_memory", "compute_capability", "instance_path", "path",
                                           "optional", "on_events", "duration", "username", "password", "size"}
    | set(GPUSpec.model_fields) | set(Profile.model_fields)
)


RESOURCE_KEYS = ("cpu", "memory", "shm_size", "disk", "gpu")
# dstack fields of other configuration types: named as such, never "corrected" into a task field.
OTHER_TYPES_FIELDS = {
    **dict.fromkeys(("port", "gateway", "model", "https", "auth", "replicas", "scaling", "rate_limits", "probes",
                     "strip_prefix"), "services"),
    **dict.fromkeys(("ide", "version", "init", "inactivity_duration"), "dev environments"),
}
REMOVED_FIELDS = {
    "pool_name": "runs are placed with fleets now (fleets: [NAME])",
    "instance_name": "runs are placed with instances now (instances: [NAME])",
    "retry_policy": "write retry: {on_events: [...], duration: 1h}",
    "termination_policy": "machines end with the run; use idle_duration in dstack",
    "termination_idle_time": "machines end with the run; use idle_duration in dstack",
}


def _message(error: dict, field_path: tuple) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        name = str(field_path[-1]) if field_path else "?"
        if name in RESOURCE_KEYS and len(field_path) == 1:
            return f"unknown field {name!r}: `{name}` belongs under `resources:` (indent it there)"
        if len(field_path) == 1 and name in OTHER_TYPES_FIELDS:
            return f"{name!r} is a field of dstack {OTHER_TYPES_FIELDS[name]}, not of tasks: remove it"
        if len(field_path) == 1 and name in REMOVED_FIELDS:
            return f"{name!r} was removed from dstack: {REMOVED_FIELDS[name]}"
        if len(field_path) == 3 and field_path[0] == "groups":
            fields = ", ".join(NodeGroup.model_fields)
            return (f"unknown field {name!r}: a node group takes {fields}"
                    + (f"; set {name} at the top level, for every group" if name in TaskConfiguration.model_fields
                       else ""))
        close = difflib.get_close_matches(name, _FIELD_NAMES, n=1)
        if close and close[0] == name:
            return f"unknown field {name!r}: it is not a field here (see `dstack-iac schema` for where it goes)"
        hint = f": did you mean {close[0]!r}?" if close else ": remove it (see `dstack-iac schema` for the fields)"
        return f"unknown field {name!r}{hint}"
    if kind == "missing":
        return "is required"
    if kind in ("value_error", "assertion_error"):
        return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    given = error.get("input")
    if not isinstance(given, (dict, list)):
        return f"{message}, got {given!r}"
    return message


@dataclass
class LoadedFile:
    """A validated `type: X` file (a volume, a fleet, ...) with what is needed to point at its
    lines later."""

    configuration: Any
    path: Path
    source: YamlSource

    def reject(self, problems: list[tuple[str, str]]) -> None:
        """Raise the (field, message) problems found later (by a backend), at their lines."""
        if not problems:
            return
        issues = []
        for field_name, message in problems:
            path = tuple(int(part) if part.isdigit() else part for part in field_name.replace("]", "").replace("[", ".").split("."))
            line, column = self.source.position(path, key=True)
            issues.append(ConfigIssue(self.source.file, line, column, field_name, message))
        raise ConfigError(issues)


LoadedVolume = LoadedFile


def peek_type(file: Path) -> str | None:
    """The `type:` of a configuration file, or None when it has none (errors are the loader's)."""
    path = discover_configuration(Path.cwd(), file)
    source = load_yaml(read_configuration(path), _display(path))
    kind = source.data.get("type") if isinstance(source.data, dict) else None
    return kind if isinstance(kind, str) else None


def load_file_of_type(file: Path, kind: str, model: type[BaseModel]) -> LoadedFile:
    """A `type: <kind>` file validated against `model`, with the same positioned errors as tasks."""
    path = discover_configuration(Path.cwd(), file)
    source = load_yaml(read_configuration(path), _display(path))
    if not isinstance(source.data, dict) or source.data.get("type") != kind:
        line, column = source.position(("type",)) if isinstance(source.data, dict) else (1, 1)
        raise ConfigError([ConfigIssue(source.file, line, column, "type", f"this file must say `type: {kind}`")])
    try:
        return LoadedFile(model.model_validate(source.data), path, source)
    except ValidationError as exc:
        raise ConfigError(_issues(exc, source.data, {(): _Origin(source, ())}, source)) from None


def load_volume(file: Path) -> LoadedFile:
    """A `type: volume` file, validated with the same positioned errors as tasks."""
    return load_file_of_type(file, "volume", VolumeConfiguration)
