"""Planning: from a validated task to a `RunPlan` (pure, apart from reading host facts)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from dstack_iac.config.loader import Task
from dstack_iac.config.models import TaskConfiguration
from dstack_iac.execution.interpreters import find_interpreter
from dstack_iac.offers.models import NoOfferError, Offer
from dstack_iac.runs.mounts import ResolvedMount, resolve_mounts


class RunPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_name: str
    configuration: TaskConfiguration
    configuration_path: str
    repo_dir: Path
    backend: str
    offer: Offer
    nodes: int
    run_args: list[str] = []
    build: bool = False
    python: str  # interpreter that creates each node's virtualenv
    archive_size: int = 0
    mounts: list[ResolvedMount] = []

    @property
    def volume_names(self) -> list[str]:
        return sorted({m.volume for m in self.mounts if m.volume})

    @property
    def total_price(self) -> float:
        return self.offer.price * self.nodes


CLOUD_PYTHON = "python3"  # the node image's interpreter


def choose_backend(configuration: TaskConfiguration) -> str:
    """`local` when no backend is configured or `local` is listed (it costs nothing); otherwise
    the clouds, whose cheapest offer planning picks."""
    backends = configuration.backends or ["local"]
    if "local" in backends:
        return "local"
    return "cloud"


def _near_volumes(query, mounts: list[ResolvedMount]):
    """Network disks are zonal: a run's nodes go where its volumes are. GCP zones are named as
    in the catalog; AWS catalog zones are account-independent AZ ids, so for AWS the region is
    constrained here and the component places the nodes in the volume's zone by name."""
    places = {(m.backend, m.region, m.availability_zone) for m in mounts if m.volume}
    if not places:
        return query
    if len(places) > 1:
        listed = ", ".join(f"{b} {r} {z}" for b, r, z in sorted(places, key=str))
        raise NoOfferError(f"the run's volumes are in different places ({listed}): a run's nodes share one zone")
    [(backend, region, zone)] = places
    update = {"backends": (backend,), "regions": (region,)}
    if backend == "gcp" and zone:
        update["availability_zones"] = (zone,)
    return query.model_copy(update=update)


def plan_run(task: Task, run_name: str) -> RunPlan:
    configuration = task.configuration
    backend = choose_backend(configuration)
    if backend == "local":
        from dstack_iac.offers.local import local_offer

        if configuration.image:
            raise NoOfferError(
                f"image {configuration.image!r}: the local backend runs commands directly on this machine and uses "
                "no container runtime; remove `image` (use `python`) or choose a cloud backend (-b aws / -b gcp)"
            )
        offer = local_offer(configuration.resources)
        python = find_interpreter(configuration.python)
        mounts = resolve_mounts(configuration, "local", configuration.nodes)
    else:
        from dstack_iac.offers.query import OfferQuery, find_offers

        mounts = resolve_mounts(configuration, None, configuration.nodes)
        query = OfferQuery.from_configuration(configuration)
        query = _near_volumes(query, mounts)
        offer = find_offers(query, limit=1)[0]
        python = f"python{configuration.python}" if configuration.python else CLOUD_PYTHON
    return RunPlan(
        run_name=run_name,
        configuration=configuration,
        configuration_path=task.display_path,
        repo_dir=task.repo_dir,
        backend=offer.backend,
        offer=offer,
        nodes=configuration.nodes,
        run_args=task.run_args,
        build=task.build,
        python=python,
        mounts=mounts,
    )
