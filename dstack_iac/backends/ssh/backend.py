"""The `ssh` backend: runs on machines the user already has (an SSH fleet, `fleet create`).

A run's stack creates no machine: it declares the run's footprint on each host it was given, a
lease (a run directory holding its locks and caches, the run's own key, a cgroup, a watchdog),
and destroying the stack removes it. Planning picks free hosts of the fleets (recorded by `fleet create`, measured, $0); the
lifecycle, execution and teardown are the generic ones (see backends/base.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from dstack_iac.backends.base import BaseBackend
from dstack_iac.backends.ssh import allocation, leases, records
from dstack_iac.backends.ssh.handlers import BUSY_MARKER
from dstack_iac.backends.ssh.hosts import HostError, Target
from dstack_iac.config.models import InstanceVolumeMount, RetryEvent, TaskConfiguration, VolumeConfiguration
from dstack_iac.errors import BadInput, NoOffer, UnsupportedField
from dstack_iac.model.backend import Capability, Check, OfferRequest
from dstack_iac.model.nodes import NodeEndpoint
from dstack_iac.model.offers import Offer
from dstack_iac.model.plan import NodeRuntime, RunInputs, RunPlan


class UnknownFleet(BadInput):
    pass


def _selected_fleets(configuration: TaskConfiguration) -> list[records.FleetRecord]:
    """The fleets a task may use: those it names (a `fleets` field, when the configuration has
    one), else every fleet of this state dir."""
    fleets = records.all_fleets()
    # A `fleets` entry is a name, or a reference with one (dstack's `project/name`).
    wanted = [getattr(ref, "name", ref) for ref in getattr(configuration, "fleets", None) or []]
    if not wanted:
        return fleets
    known = {fleet.name: fleet for fleet in fleets}
    missing = [name for name in wanted if name not in known]
    if missing:
        raise UnknownFleet(f"fleets: no fleet named {', '.join(repr(m) for m in missing)} (see `dstack-iac fleet list`)")
    return [known[name] for name in wanted]


class SshBackend(BaseBackend):
    name: ClassVar[str] = "ssh"
    summary: ClassVar[str] = "your own machines over SSH (fleets: `dstack-iac fleet create`)"
    capacity_markers: ClassVar[tuple[str, ...]] = (BUSY_MARKER,)
    # Its machines are the fleets' hosts: `fleets`, `instances` and `creation_policy: reuse` are
    # what it does anyway. No containers: `image` and the fields that need one are refused.
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.EXISTING_MACHINES})
    # The lease's `target` repeats `host` with the pinned keys: too long for the preview table.
    hidden_inputs: ClassVar[frozenset[str]] = frozenset({"authorized_key", "target"})
    # Where this machine records the lease: the run's directory (a preview's is a scratch one).
    per_launch_inputs: ClassVar[frozenset[str]] = frozenset({"run_dir"})
    # The hosts are reachable from anywhere, but what releases a run's leases is on the machine
    # that started it: the lease markers (a lease the stack never heard of is found by them), the
    # fleet's record and pinned host keys, and the identity files named by their paths there.
    host_bound: ClassVar[bool] = True
    host_bound_why: ClassVar[str] = ("its leases on the fleet's hosts are released with what only that machine has "
                                     "(the lease records, the fleet's record and host keys, its identity files), "
                                     "so only it can stop the run")

    def considered_by_default(self) -> bool:
        # As in dstack: once there is a fleet, a task that names no backend may run on it.
        return records.any_fleet()

    def check_task(self, configuration: TaskConfiguration) -> None:
        # `image`, `shm_size` and the like need containers: refused by planning (capabilities).
        for name in ("files", "repos"):
            for index, item in enumerate(getattr(configuration, name, None) or []):
                if str(getattr(item, "path", "")).startswith(("/", "~")):
                    raise UnsupportedField(f"{name}[{index}].path", self.name, "on someone else's machine it writes "
                                           "inside the run's directory only", "use a path relative to the working "
                                           "directory")
        for index, mount in enumerate(configuration.volumes):
            if isinstance(mount, InstanceVolumeMount) and mount.optional:
                raise UnsupportedField(f"volumes[{index}].optional", self.name, "whether a path exists on the hosts "
                                       "is not known before they are leased", "remove optional: the path must exist "
                                       "on every host")

    def offers(self, request: OfferRequest) -> list[Offer]:
        configuration = request.configuration
        if configuration.spot_policy is not None and configuration.spot_policy.value == "spot":
            raise NoOffer("the ssh backend has no spot instances: a fleet's hosts are yours (remove spot_policy: spot)")
        fleets = _selected_fleets(configuration)
        if not fleets:
            raise NoOffer("the ssh backend has no fleet: create one with `dstack-iac fleet create -f FLEET.dstack.yml`")
        wait = bool(configuration.retry and RetryEvent.NO_CAPACITY in configuration.retry.on_events)
        reasons: list[str] = []
        for patient in ((False, True) if wait else (False,)):
            for fleet in fleets:
                placements, why = allocation.place(configuration, fleet, records.users(fleet.name), wait=patient)
                if placements is not None:
                    return [allocation.offer(self.name, fleet, placements)]
                if not patient:
                    reasons += why
        raise NoOffer("the ssh backend cannot run this task:\n  " + "\n  ".join(reasons))

    def node_python(self, version: str | None) -> str:
        # offers() kept only hosts that have it; None is the hosts' own python3.
        return f"python{version}" if version else "python3"

    def check_volume(self, volume: VolumeConfiguration) -> list[tuple[str, str]]:
        return [("backend", "the ssh backend has no network volumes: mount a directory of the hosts instead "
                            "(volumes: [/data:/data])")]

    def volume_zone(self, volume: VolumeConfiguration) -> str | None:
        return None

    def node_user(self) -> str:
        # There is no run-wide login user: each host has its own (the host's `user`, else
        # ssh_config.user), which its lease exports as its node's `user` (handlers.py), and
        # every session and `dstack-iac ssh` use that one.
        return ""

    def _placements(self, plan: RunPlan) -> tuple[records.FleetRecord, list[allocation.Placement]]:
        """The hosts planning chose, in rank order, from the plan's offers (one per node group)."""
        groups = [(group.offer, group.nodes) for group in getattr(plan, "groups", None) or []] or \
            [(plan.offer, plan.nodes)]
        fleet = records.load(groups[0][0].region)
        if fleet is None or any(offer.region != fleet.name for offer, _nodes in groups):
            raise UnknownFleet(f"the fleet {groups[0][0].region!r} the run was planned on no longer exists "
                               "(see `dstack-iac fleet list`)")
        placements: list[allocation.Placement] = []
        for offer, nodes in groups:
            chosen = allocation.decode(offer.instance_type)
            if len(chosen) != nodes:
                raise BadInput(f"the plan names {len(chosen)} hosts for {nodes} nodes: plan the run again")
            for label, blocks in chosen:
                host = fleet.host(label)
                if host is None:
                    raise UnknownFleet(f"fleet {fleet.name} has no host {label!r} any more: plan the run again")
                if any(p.host.label == label for p in placements):
                    # Node groups are planned one by one: two of them may pick the same host.
                    raise NoOffer(f"two node groups of the run were given host {label} of fleet {fleet.name}, and "
                                  "a host takes one node of a run: give the groups hosts of their own (instances)")
                placements.append(allocation.Placement(host, tuple(blocks) or (0,)))
        return fleet, placements

    def prepare(self, plan: RunPlan, run_dir: Path, *, preview: bool = False) -> RunInputs:
        self._placements(plan)  # the plan's hosts still exist
        public_key, key_path = self.run_key(plan.run_name, run_dir, preview=preview)
        # The users of the placements' hosts are in their leases (node_user says why).
        return RunInputs(run_name=plan.run_name, run_dir=str(run_dir), public_key=public_key, key_path=key_path,
                         user=self.node_user())

    def declare_cluster(self, name: str, plan: RunPlan, inputs: RunInputs) -> Any:
        from dstack_iac.backends.ssh.resources import SshTaskCluster

        fleet, placements = self._placements(plan)
        return SshTaskCluster(name, run_name=plan.run_name, fleet=fleet, placements=placements,
                              authorized_key=inputs.public_key, run_dir=inputs.run_dir,
                              lease_seconds=plan.lease_seconds)

    def connect(self, endpoint: NodeEndpoint, inputs: RunInputs):
        from dstack_iac.backends.ssh.session import SshSession, lease_environment

        data = leases.read_marker(leases.marker_path(inputs.run_dir, endpoint.rank))
        if data is None:
            raise HostError(f"node {endpoint.rank}: its lease was not recorded on this machine")
        marker = records.LeaseMarker.model_validate(data)
        fleet = records.load(marker.fleet)
        environment = lease_environment(fleet.env if fleet else {}, marker.gpu_vendor, marker.gpu_indices)
        return SshSession(endpoint, Path(inputs.key_path), inputs.known_hosts,
                          target=Target.from_props(marker.target), environment=environment)

    def node_runtime(self, plan: RunPlan, endpoint: NodeEndpoint) -> NodeRuntime:
        # The caches are in the run's directory, removed with it (the host keeps nothing): links
        # to the host dir's own when its owner made them there to share them between runs (see
        # remote.py `_cache_links`). Instance volumes appear through a private mount namespace.
        cache = f"{endpoint.node_dir}/cache"
        return NodeRuntime(pip_cache_dir=f"{cache}/pip-cache", wheelhouse=f"{cache}/wheels",
                           venv_seeds=f"{cache}/venv-seeds", build_cache=f"{cache}/builds",
                           namespace_mounts=[(m.source, m.path) for m in plan.mounts_of(endpoint.rank)])

    def leftovers(self, run_name: str, run_dir: Path) -> list[str]:
        return [f"its lease on host {marker.get('label')} (fleet {marker.get('fleet')})"
                for _path, marker in leases.markers(run_dir)]

    def sweep(self, run_name: str, run_dir: Path) -> list[str]:
        """Leases the stack no longer knows (or never knew: a create cut short), from their
        markers. A host that does not answer keeps its marker: the stack's destroy (or the next
        `stop`) reports it."""
        removed = []
        for path, marker in leases.markers(run_dir):
            try:
                removed += leases.release(Target.from_props(marker["target"]), marker["run"], int(marker["rank"]))
            except (HostError, KeyError, ValueError):
                continue
            path.unlink(missing_ok=True)
        return removed

    def doctor_checks(self) -> list[Check]:
        fleets = records.all_fleets()
        detail = ", ".join(f"{f.name} ({len(f.hosts)} host{'s' if len(f.hosts) > 1 else ''})" for f in fleets)
        return [Check(name="ssh fleets", ok=True, detail=detail or "none (dstack-iac fleet create -f FILE)", info=True)]
