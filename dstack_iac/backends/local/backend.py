"""The `local` backend: a run's nodes are sshd servers on loopback addresses of this machine."""

from __future__ import annotations

import getpass
import shutil
from pathlib import Path
from typing import Any, ClassVar

from dstack_iac.backends.base import BaseBackend
from dstack_iac.backends.local import node as local_node
from dstack_iac.config.models import TaskConfiguration, VolumeConfiguration
from dstack_iac.errors import UnsupportedField
from dstack_iac.model.backend import Capability, Check, OfferRequest
from dstack_iac.model.nodes import NodeEndpoint
from dstack_iac.model.offers import Offer
from dstack_iac.model.plan import NodeRuntime, RunInputs, RunPlan
from dstack_iac.paths import cache_dir, volumes_dir, wheelhouse_dir
from dstack_iac.state import processes

MAX_LOCAL_NODES = 64  # every node is an sshd and a task on this machine


def local_volume_directory(name: str) -> str:
    return str(volumes_dir() / name / "data")


class LocalBackend(BaseBackend):
    name: ClassVar[str] = "local"
    summary: ClassVar[str] = "this machine: each node is an sshd on its own loopback address"
    per_launch_inputs: ClassVar[frozenset[str]] = frozenset({"address_base", "node_dir", "host_id"})
    host_bound: ClassVar[bool] = True

    def considered_by_default(self) -> bool:
        return True

    def lacks(self, capability: Capability, field: str) -> tuple[str, str]:
        why, _ = super().lacks(capability, field)
        if field == "resources.shm_size":
            why = "its nodes share this machine's /dev/shm (there is no container to size it)"
        if field == "user":
            why = "its nodes are processes of yours: the commands run as you"
        if capability == Capability.CONTAINERS:
            why = "it runs the commands directly on this machine, with no container runtime"
        cloud = "choose a cloud backend (-b aws / -b gcp)"
        if capability == Capability.EXISTING_MACHINES:
            return why, "remove it, or run on an SSH fleet of your machines (backends: [ssh], see docs/fleets.md)"
        instead = {
            "image": f"remove image (use python), or {cloud}",
            "nvcc": f"remove it (a CUDA toolkit installed on this machine is on PATH as it is), or {cloud}",
            "user": f"remove it, or {cloud}",
        }.get(field, f"remove it, or {cloud}")
        return why, instead

    def check_task(self, configuration: TaskConfiguration) -> None:
        from dstack_iac.backends.local.placement import check_placements

        check_placements(configuration, self.name)
        if configuration.total_nodes > MAX_LOCAL_NODES:
            raise UnsupportedField("nodes", self.name, f"it runs at most {MAX_LOCAL_NODES} nodes on this machine",
                                   "use fewer nodes, or a cloud backend")

    def offers(self, request: OfferRequest) -> list[Offer]:
        from dstack_iac.backends.local.offers import local_offer

        return [local_offer(request.configuration.resources)]

    def node_python(self, version: str | None) -> str:
        from dstack_iac.backends.local.interpreters import find_interpreter

        return find_interpreter(version)

    def instance_path_exists(self, path: str) -> bool | None:
        return Path(path).is_dir()

    def check_volume(self, volume: VolumeConfiguration) -> list[tuple[str, str]]:
        if volume.volume_id:
            return [("volume_id", "a local volume is a directory: volume_id does not apply")]
        return []

    def volume_zone(self, volume: VolumeConfiguration) -> str | None:
        return None

    def node_user(self) -> str:
        return getpass.getuser()

    def declare_cluster(self, name: str, plan: RunPlan, inputs: RunInputs) -> Any:
        from dstack_iac.backends.local.resources import LocalTaskCluster

        return LocalTaskCluster(name, run_name=plan.run_name, nodes=plan.nodes, user=inputs.user,
                                authorized_key=inputs.public_key, nodes_dir=str(Path(inputs.run_dir) / "nodes"),
                                lease_seconds=plan.lease_seconds)

    def declare_volume(self, name: str, volume: VolumeConfiguration) -> dict[str, Any]:
        from dstack_iac.backends.local.resources import LocalVolume

        resource = LocalVolume(name, volume_name=volume.name, directory=local_volume_directory(volume.name))
        return {"source": resource.directory, "directory": resource.directory, "volume_id": volume.name,
                "availability_zone": None}

    def node_runtime(self, plan: RunPlan, endpoint: NodeEndpoint) -> NodeRuntime:
        # Local nodes share this machine's caches; volumes, and files or a repo placed outside the
        # node's directory, appear through a private mount namespace.
        from dstack_iac.backends.local.placement import private_layout

        roots, kept, binds, repo_dir = private_layout(plan.configuration, endpoint.node_dir)
        return NodeRuntime(pip_cache_dir=str(cache_dir() / "pip"), wheelhouse=str(wheelhouse_dir()),
                           venv_seeds=str(cache_dir() / "venv-seeds"), build_cache=str(cache_dir() / "builds"),
                           namespace_mounts=[(m.source, m.path) for m in plan.mounts_of(endpoint.rank)] + binds,
                           private_roots=roots, kept_dirs=kept, repo_dir=repo_dir)

    def leftovers(self, run_name: str, run_dir: Path) -> list[str]:
        found = []
        nodes_dir = run_dir / "nodes"
        for root in sorted(nodes_dir.glob("*")) if nodes_dir.is_dir() else []:
            pids = local_node.node_processes(root)
            found.append(f"node {root.name}: " + (f"processes {pids}" if pids else "its directory"))
        stray = [pid for pid in processes.mentioning(str(nodes_dir)) if not nodes_dir.is_dir()]
        if stray:
            found.append(f"processes {stray}")
        return found

    def forward_ports(self, session, ports):
        from dstack_iac.backends.local.ports import local_forward_ports

        return local_forward_ports(session, ports)

    def sweep(self, run_name: str, run_dir: Path) -> list[str]:
        """Nodes the stack no longer knows (or never knew: a create cut short), found by their
        directories and the processes that name them."""
        removed = []
        nodes_dir = run_dir / "nodes"
        for root in sorted(nodes_dir.glob("*")) if nodes_dir.is_dir() else []:
            pids = local_node.node_processes(root)
            local_node.stop_node(str(root))
            removed.append(f"node directory {root}" + (f" and its processes {pids}" if pids else ""))
        # A process that outlived its directory still names it.
        stray = processes.mentioning(str(nodes_dir))
        if stray:
            processes.terminate(stray)
            removed.append(f"processes {stray}")
        shutil.rmtree(nodes_dir, ignore_errors=True)
        return removed

    def doctor_checks(self) -> list[Check]:
        sshd = local_node.find_sshd()
        return [Check(name="sshd", ok=sshd is not None, detail=str(sshd or "not found"),
                      fix="install OpenSSH's server: sudo apt-get install openssh-server")]
