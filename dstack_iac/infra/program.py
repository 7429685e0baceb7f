"""The Pulumi program of a run: what each run's ephemeral stack declares.

Whatever the backend, the stack exports the same outputs, which execution consumes:
`nodes` (per rank: address, private_address, port, user, host_key, working_dir) and `key_path`.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from dstack_iac.paths import run_dir
from dstack_iac.runs.plan import RunPlan


class NodeEndpoint(BaseModel):
    rank: int
    address: str
    private_address: str
    port: int
    user: str
    host_key: str
    working_dir: str
    directory: str | None = None


class StackOutputs(BaseModel):
    nodes: list[NodeEndpoint]
    key_path: str


def cluster_spec(plan: RunPlan, public_key: str, host_keys: list, ssh_cidr: str):
    """A cloud run's ClusterSpec: the plan, the run's keys, and its volumes per rank."""
    from dstack_iac.infra.cloud.spec import ClusterSpec, MountedVolume, RegistryLogin

    configuration = plan.configuration
    volumes = [MountedVolume(name=m.volume, path=m.path, rank=m.rank, volume_id=m.source if m.source != m.volume else None)
               for m in plan.mounts if m.volume]
    zones = {m.availability_zone for m in plan.mounts if m.volume and m.availability_zone}
    registry = None
    if configuration.registry_auth and configuration.image:
        server = configuration.image.split("/")[0] if "." in configuration.image.split("/")[0] else "docker.io"
        registry = RegistryLogin(server=server, username=configuration.registry_auth.username,
                                 password=configuration.registry_auth.password)
    return ClusterSpec(
        run_name=plan.run_name, offer=plan.offer, nodes=plan.nodes, authorized_key=public_key, host_keys=host_keys,
        ssh_cidr=ssh_cidr, disk_gb=plan.offer.disk_gb, image=configuration.image, registry=registry, volumes=volumes,
        availability_zone_name=next(iter(zones)) if len(zones) == 1 else None,
    )


def run_program(plan: RunPlan, public_key: str, user: str, host_keys: list | None = None,
                ssh_cidr: str | None = None) -> Callable[[], None]:
    def program() -> None:
        import pulumi

        if plan.backend == "local":
            from dstack_iac.infra.local.cluster import LocalTaskCluster

            cluster = LocalTaskCluster("run", run_name=plan.run_name, nodes=plan.nodes, user=user,
                                       authorized_key=public_key, nodes_dir=str(run_dir(plan.run_name) / "nodes"))
        else:
            if plan.backend == "aws":
                from dstack_iac.infra.aws import AwsTaskCluster as Cluster
            else:
                from dstack_iac.infra.gcp import GcpTaskCluster as Cluster
            cluster = Cluster("run", cluster_spec(plan, public_key, host_keys or [], ssh_cidr or ""))
        pulumi.export("nodes", cluster.nodes)
        pulumi.export("key_path", str(run_dir(plan.run_name) / "id_ed25519"))

    return program
