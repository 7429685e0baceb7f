"""The offer a run was planned on, as a resource of its stack (`dstack-iac:run:Offer`): what the
run costs and which machines it rents, where a policy pack (and anyone reading the state) sees it,
whatever the backend. A component: nothing is created for it anywhere."""

from __future__ import annotations

from typing import Any

from dstack_iac.model.offers import Offer

OFFER_TYPE = "dstack-iac:run:Offer"


def offer_properties(offer: Offer, nodes: int, rented: bool) -> dict[str, Any]:
    """The offer's facts, named as policies read them (camelCase, like every engine property).
    `rented`: the machines come from a priced catalog (a cloud), not ones the user has."""
    gpu = f"{offer.gpu.name}:{offer.gpu.count}" if offer.gpu else None
    return {
        "backend": offer.backend, "region": offer.region, "availabilityZone": offer.availability_zone,
        "instanceType": offer.instance_type, "spot": offer.spot, "nodes": nodes, "gpu": gpu,
        "pricePerHour": offer.price, "totalPricePerHour": round(offer.price * nodes, 6), "rented": rented,
    }


def declare_offer(name: str, offer: Offer, nodes: int, rented: bool, opts: Any = None) -> Any:
    """Inside a Pulumi program: the offer as a component resource."""
    import pulumi

    class RunOffer(pulumi.ComponentResource):
        def __init__(self) -> None:
            super().__init__(OFFER_TYPE, name, offer_properties(offer, nodes, rented), opts)
            self.register_outputs({})

    return RunOffer()
