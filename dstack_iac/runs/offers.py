"""What `offers` lists: every candidate backend's offers for a task, cheapest first."""

from __future__ import annotations

from collections.abc import Callable

from dstack_iac.backends.registry import all_backends
from dstack_iac.config.loader import Task
from dstack_iac.errors import DstackIacError, NoOffer
from dstack_iac.model.backend import OfferRequest
from dstack_iac.model.offers import Offer
from dstack_iac.runs.planning import named_backends


def list_offers(task: Task, note: Callable[[str], None] = lambda _: None) -> list[Offer]:
    """The task's backends' offers (all backends with a catalog when it names none), cheapest
    first; NoOffer with every backend's reason when none has one."""
    names = task.configuration.backends
    backends = named_backends(names, note) if names else \
        [backend for backend in all_backends() if backend.catalog is not None]
    found: list[Offer] = []
    reasons: list[tuple[str, DstackIacError]] = []
    request = OfferRequest(configuration=task.configuration)
    for backend in backends:
        try:
            found += backend.offers(request)
        except NoOffer as exc:
            reasons.append((backend.name, exc))
    if not found:
        if len(reasons) == 1:
            raise reasons[0][1]
        raise NoOffer("no offer matches:\n" + "\n".join(f"- {name}: {exc.render()}" for name, exc in reasons))
    return sorted(found, key=lambda o: (o.price, o.backend, o.region, o.instance_type))


def refresh_catalogs() -> dict[str, int]:
    """Download every backend's current catalog (needs internet)."""
    from dstack_iac.offers.refresh import refresh_catalogs as refresh

    catalogs = [backend.catalog for backend in all_backends() if backend.catalog is not None]
    try:
        return refresh(catalogs)
    except (OSError, ValueError) as exc:
        raise DstackIacError(f"could not refresh the catalog: {exc}") from None
