"""Backend names to implementations: the one list a new backend adds itself to.

An entry names the backend's class and, when it has them, what else it brings: resources the
package's own Pulumi provider serves for it, configuration types (`type: fleet`), and a command
group of the CLI. Everything is named as a string and loads on first use, so a command that
never touches a cloud never imports its SDK.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dstack_iac.config.backend_names import plugin_backends
from dstack_iac.errors import BadInput

if TYPE_CHECKING:  # the provider process reads this module at start: no pydantic models here
    from dstack_iac.model.backend import Backend


@dataclass(frozen=True)
class Registration:
    implementation: str  # "module:Class"
    handlers: str | None = None  # a module whose HANDLERS the package's provider serves
    configurations: dict[str, str] = field(default_factory=dict)  # `type:` name -> "module:Model"
    commands: tuple[str, str] | None = None  # (group name, "module:typer_app")


# In the order planning considers them when prices tie.
BACKENDS: dict[str, Registration] = {
    # First: once a fleet exists, a task that names no backend runs on it (ties go to the first).
    "ssh": Registration("dstack_iac.backends.ssh.backend:SshBackend", handlers="dstack_iac.backends.ssh.handlers",
                        configurations={"fleet": "dstack_iac.backends.ssh.config:FleetConfiguration"},
                        commands=("fleet", "dstack_iac.backends.ssh.cli:fleet_app")),
    "local": Registration("dstack_iac.backends.local.backend:LocalBackend", handlers="dstack_iac.backends.local.handlers"),
    "aws": Registration("dstack_iac.backends.aws.backend:AwsBackend"),
    "gcp": Registration("dstack_iac.backends.gcp.backend:GcpBackend"),
}


def _load(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _registrations() -> dict[str, Registration]:
    """The built-in backends, plus any named in $DSTACK_IAC_BACKENDS (`name=module:Class,...`):
    how a backend developed outside the package is tried before it becomes a registry line."""
    found = dict(BACKENDS)
    for name, target in plugin_backends().items():
        found[name] = Registration(target)
    return found


def names() -> list[str]:
    return list(_registrations())


class NotImplementedBackend(BadInput):
    pass


@functools.cache
def _instance(target: str) -> Backend:
    return _load(target)()


def get_backend(name: str) -> Backend:
    registrations = _registrations()
    if name not in registrations:
        raise NotImplementedBackend(f"{name} is a dstack backend dstack-iac does not provision; implemented: "
                                    f"{', '.join(registrations)}")
    return _instance(registrations[name].implementation)


def all_backends() -> list[Backend]:
    return [get_backend(name) for name in _registrations()]


def provider_handlers(backend_name: str) -> dict:
    """What the package's Pulumi provider serves for one backend (`dstack-iac:<backend>:<Type>`),
    by type token; loaded only when the engine first asks for one of its resources."""
    registration = _registrations().get(backend_name)
    if registration is None or not registration.handlers:
        return {}
    return {handler.type_token: handler for handler in importlib.import_module(registration.handlers).HANDLERS}


def configuration_types() -> dict[str, Any]:
    """Configuration types backends add (`type: fleet`), name -> pydantic model."""
    return {name: _load(target) for registration in _registrations().values()
            for name, target in registration.configurations.items()}


def command_groups() -> list[tuple[str, Any]]:
    """CLI command groups backends add: (name, typer app)."""
    return [(registration.commands[0], _load(registration.commands[1]))
            for registration in _registrations().values() if registration.commands]
