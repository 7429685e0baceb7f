"""GCP resources of runs, found through Cloud Asset search: instances and disks by their labels,
firewall rules (which take no labels) by their names, `dstack-iac-<run>-ssh|intra`."""

from __future__ import annotations

from collections.abc import Callable

from dstack_iac.model.backend import Orphan

RUN_LABEL = "dstack-iac-run"
FIREWALL_PREFIX = "dstack-iac-"
FIREWALL_SUFFIXES = ("-ssh", "-intra")
ASSET_TYPES = {
    "compute.googleapis.com/Instance": "gcp:compute/instance:Instance",
    "compute.googleapis.com/Disk": "gcp:compute/disk:Disk",
    "compute.googleapis.com/Firewall": "gcp:compute/firewall:Firewall",
}
FIRST = ("gcp:compute/instance:Instance",)


def firewall_name(run_name: str, purpose: str) -> str:
    return f"{FIREWALL_PREFIX}{run_name}-{purpose}"


def orphan_of(asset_type: str, name: str, labels: dict, location: str, runs_with_stacks: set[str]) -> Orphan | None:
    """The orphan a search result stands for, or None (a live run's, or not ours)."""
    pulumi_type = ASSET_TYPES.get(asset_type)
    short = name.rsplit("/", 1)[-1]
    run = labels.get(RUN_LABEL)
    if pulumi_type == ASSET_TYPES["compute.googleapis.com/Firewall"] and short.startswith(FIREWALL_PREFIX):
        run = next((short[len(FIREWALL_PREFIX):-len(s)] for s in FIREWALL_SUFFIXES if short.endswith(s)), None)
    if pulumi_type is None or not run or run in runs_with_stacks:
        return None
    # The asset's full name, //compute.googleapis.com/projects/p/zones/z/instances/x, less its service.
    resource_id = name.split("googleapis.com/", 1)[-1]
    return Orphan(backend="gcp", run=run, type=pulumi_type, id=resource_id, region=location,
                  owner=labels.get("dstack-iac-owner"), expires_at=labels.get("dstack-iac-expires-at"))


def discovery_program(runs_with_stacks: set[str]):
    def program(report: Callable[[list], None]) -> None:
        import pulumi
        import pulumi_gcp as gcp

        project = gcp.organizations.get_client_config_output().project

        def search(project_id: str):
            return gcp.cloudasset.get_search_all_resources_output(
                scope=f"projects/{project_id}", asset_types=list(ASSET_TYPES),
                query=f"labels.{RUN_LABEL}:* OR name:{FIREWALL_PREFIX}")

        def collect(results) -> None:
            orphans = [orphan_of(r.asset_type, r.name, dict(r.labels or {}), r.location, runs_with_stacks)
                       for r in results]
            report([o for o in orphans if o is not None])

        project.apply(search).apply(lambda found: found.results).apply(collect)
        pulumi.export("project", project)

    return program
