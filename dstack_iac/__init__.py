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
    "ConfigError": "dstack_iac.config.errors",
    # offers
    "Offer": "dstack_iac.offers.models",
    "OfferQuery": "dstack_iac.offers.query",
    "find_offers": "dstack_iac.offers.query",
    "NoOfferError": "dstack_iac.offers.models",
    # infrastructure components
    "ClusterSpec": "dstack_iac.infra.cloud.spec",
    "NodeHostKey": "dstack_iac.infra.cloud.spec",
    "MountedVolume": "dstack_iac.infra.cloud.spec",
    "RegistryLogin": "dstack_iac.infra.cloud.spec",
    "AwsTaskCluster": "dstack_iac.infra.aws",
    "AwsVolume": "dstack_iac.infra.aws",
    "GcpTaskCluster": "dstack_iac.infra.gcp",
    "GcpVolume": "dstack_iac.infra.gcp",
    "LocalTaskCluster": "dstack_iac.infra.local.cluster",
    "LocalVolume": "dstack_iac.infra.local.volume",
    "task_cluster": "dstack_iac.infra.reuse",
    "volume": "dstack_iac.infra.reuse",
    # running
    "plan_run": "dstack_iac.runs.plan",
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
