"""dstack-iac: dstack tasks as ephemeral Pulumi stacks.

The public API, for platform teams' own Pulumi programs (see docs/reuse.md). Names load lazily:
importing the package stays cheap for the CLI, which never needs pulumi-aws or pulumi-gcp unless
a run uses them.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # configuration
    "load_task": "dstack_iac.config.loader",
    "load_volume": "dstack_iac.config.loader",
    "TaskConfiguration": "dstack_iac.config.models",
    "VolumeConfiguration": "dstack_iac.config.models",
    # errors
    "DstackIacError": "dstack_iac.errors",
    "ExitStatus": "dstack_iac.errors",
    "ConfigError": "dstack_iac.config.errors",
    "NoOffer": "dstack_iac.errors",
    # backends and offers
    "Backend": "dstack_iac.model.backend",
    "get_backend": "dstack_iac.backends.registry",
    "Offer": "dstack_iac.model.offers",
    "OfferQuery": "dstack_iac.offers.query",
    "find_offers": "dstack_iac.offers.query",
    # infrastructure components
    "ClusterSpec": "dstack_iac.backends.cloud.spec",
    "NodeHostKey": "dstack_iac.model.plan",
    "MountedVolume": "dstack_iac.backends.cloud.spec",
    "RegistryLogin": "dstack_iac.backends.cloud.spec",
    "AwsTaskCluster": "dstack_iac.backends.aws.components",
    "AwsVolume": "dstack_iac.backends.aws.components",
    "GcpTaskCluster": "dstack_iac.backends.gcp.components",
    "GcpVolume": "dstack_iac.backends.gcp.components",
    "LocalTaskCluster": "dstack_iac.backends.local.resources",
    "LocalVolume": "dstack_iac.backends.local.resources",
    "task_cluster": "dstack_iac.reuse",
    "volume": "dstack_iac.reuse",
    # running
    "plan_task": "dstack_iac.runs.planning",
    "execute_run": "dstack_iac.runs.lifecycle",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dstack_iac' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
