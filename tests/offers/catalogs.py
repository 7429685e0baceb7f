"""The bundled catalogs as the query sees them, for tests of the query itself."""

from __future__ import annotations

from dstack_iac.backends.aws.catalog import CATALOG as AWS
from dstack_iac.backends.gcp.catalog import CATALOG as GCP
from dstack_iac.offers import query
from dstack_iac.offers.catalog import catalog_rows


def find_offers(offer_query: query.OfferQuery, limit: int | None = None):
    """`find_offers` over the rows of both bundled catalogs."""
    return query.find_offers(offer_query, catalog_rows(AWS) + catalog_rows(GCP), limit=limit)
