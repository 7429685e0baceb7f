"""Backend names to implementations: the one list a new backend adds itself to.

Implementations load on first use, so a command that never touches a cloud never imports its
SDK. The provider handlers (resources the package's own provider serves) are listed here too.
"""

from __future__ import annotations

import functools
import importlib
import os

from dstack_iac.config.models import BACKEND_PLUGINS_ENV
from dstack_iac.errors import BadInput
from dstack_iac.model.backend import Backend

# name -> "module:Class", in the order planning considers them when prices tie.
BACKENDS: dict[str, str] = {
    "local": "dstack_iac.backends.local.backend:LocalBackend",
    "aws": "dstack_iac.backends.aws.backend:AwsBackend",
    "gcp": "dstack_iac.backends.gcp.backend:GcpBackend",
}

# Modules whose HANDLERS the package's Pulumi provider serves (see infra/provider.py).
PROVIDER_HANDLER_MODULES: tuple[str, ...] = (
    "dstack_iac.backends.local.handlers",
)


def _implementations() -> dict[str, str]:
    """The built-in backends, plus any named in $DSTACK_IAC_BACKENDS (`name=module:Class,...`):
    how a backend developed outside the package is tried before it becomes a registry line."""
    found = dict(BACKENDS)
    for item in os.environ.get(BACKEND_PLUGINS_ENV, "").split(","):
        name, sep, target = item.partition("=")
        if sep and name.strip() and ":" in target:
            found[name.strip()] = target.strip()
    return found


def names() -> list[str]:
    return list(_implementations())


class NotImplementedBackend(BadInput):
    pass


@functools.cache
def _load(name: str, target: str) -> Backend:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)()


def get_backend(name: str) -> Backend:
    implementations = _implementations()
    if name not in implementations:
        raise NotImplementedBackend(f"{name} is a dstack backend dstack-iac does not provision; implemented: "
                                    f"{', '.join(implementations)}")
    return _load(name, implementations[name])


def all_backends() -> list[Backend]:
    return [get_backend(name) for name in _implementations()]


def provider_handlers() -> dict:
    handlers = {}
    for module in PROVIDER_HANDLER_MODULES:
        for handler in importlib.import_module(module).HANDLERS:
            handlers[handler.type_token] = handler
    return handlers
