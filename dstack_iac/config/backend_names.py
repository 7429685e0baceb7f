"""The backend names a configuration may write: every one dstack knows (so dstack's files
validate) and dstack-iac's own, plus backends registered for development. Whether one is
implemented is planning's question (backends/registry.py), not the file's. Kept free of
pydantic: the provider process reads it at start."""

from __future__ import annotations

import os

DSTACK_BACKENDS = ("aws", "azure", "amddevcloud", "cloudrift", "crusoe", "cudo", "datacrunch", "digitalocean",
                   "dstack", "gcp", "hotaisle", "kubernetes", "lambda", "local", "nebius", "oci", "remote", "runpod",
                   "tensordock", "vastai", "verda", "vultr")
OWN_BACKENDS = ("ssh",)
BACKEND_PLUGINS_ENV = "DSTACK_IAC_BACKENDS"  # name=module:Class,... (backends developed outside the package)


def plugin_backends() -> dict[str, str]:
    """$DSTACK_IAC_BACKENDS as name -> "module:Class"."""
    found = {}
    for item in os.environ.get(BACKEND_PLUGINS_ENV, "").split(","):
        name, sep, target = item.partition("=")
        if sep and name.strip() and ":" in target:
            found[name.strip()] = target.strip()
    return found


def known_backend_names() -> tuple[str, ...]:
    return tuple(dict.fromkeys([*DSTACK_BACKENDS, *OWN_BACKENDS, *plugin_backends()]))
