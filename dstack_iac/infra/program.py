"""The Pulumi programs of the package's stacks: a run's cluster, a volume.

Whatever the backend, a run's stack exports `nodes` (see model/nodes.py), which execution
consumes. The program also hands the nodes to the caller as they resolve, so the caller needs no
`stack output` after the update.
"""

from __future__ import annotations

from collections.abc import Callable

from dstack_iac.config.models import VolumeConfiguration
from dstack_iac.model.backend import Backend
from dstack_iac.model.plan import RunInputs, RunPlan

CLUSTER_NAME = "run"


def run_program(plan: RunPlan, backend: Backend, inputs: RunInputs,
                on_nodes: Callable[[list[dict]], None] | None = None,
                on_node: Callable[[dict], None] | None = None) -> Callable[[], None]:
    """`on_nodes` gets every node once all exist; `on_node` each node as soon as it exists
    (when the backend's component says per node, see ClusterResource)."""

    def program() -> None:
        import pulumi

        from dstack_iac.infra.offer_resource import declare_offer

        declare_offer("offer", plan.offer, plan.nodes, rented=backend.catalog is not None)
        cluster = backend.declare_cluster(CLUSTER_NAME, plan, inputs)
        pulumi.export("nodes", cluster.nodes)
        if on_nodes is not None:
            cluster.nodes.apply(on_nodes)
        if on_node is not None:
            for output in getattr(cluster, "node_outputs", None) or []:
                output.apply(on_node)

    return program


def volume_program(volume: VolumeConfiguration, backend: Backend,
                   on_outputs: Callable[[dict], None] | None = None) -> Callable[[], None]:
    def program() -> None:
        import pulumi

        outputs = backend.declare_volume("volume", volume)
        for key, value in outputs.items():
            pulumi.export(key, value)
        if on_outputs is not None:
            keys = list(outputs)
            pulumi.Output.all(*outputs.values()).apply(lambda values: on_outputs(dict(zip(keys, values))))

    return program
