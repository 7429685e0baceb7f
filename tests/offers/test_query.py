"""Offers against the real bundled snapshot: expected answers are computed from the CSV rows
themselves, independently of the query code."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from dstack_iac.config.models import ResourcesSpec, SpotPolicy
from dstack_iac.errors import NoOffer as NoOfferError
from dstack_iac.offers.query import OfferQuery
from tests.offers.catalogs import find_offers
from tests.helpers import run_cli

DATA = Path(__file__).resolve().parents[2] / "dstack_iac" / "offers" / "data"


def csv_rows(backend: str) -> list[dict]:
    with open(DATA / f"{backend}.csv") as handle:
        return list(csv.DictReader(handle))


def query(gpu=None, **fields) -> OfferQuery:
    resources = ResourcesSpec.model_validate({"gpu": gpu} if gpu else {})
    return OfferQuery(resources=resources, **{"backends": ("aws", "gcp"), **fields})


def test_cheapest_a100x8_in_a_region_is_the_lowest_matching_csv_row():
    rows = [r for r in csv_rows("aws") if r["AcceleratorName"] in ("A100", "A100-80GB")
            and float(r["AcceleratorCount"]) == 8 and r["Region"] == "us-east-1"]
    expected = min(float(r["Price"]) for r in rows)
    offers = find_offers(query("A100:8", backends=("aws",), regions=("us-east-1",)))
    assert offers[0].price == pytest.approx(expected)
    assert offers[0].gpu.count == 8 and offers[0].gpu.name == "A100" and not offers[0].spot
    assert [o.price for o in offers] == sorted(o.price for o in offers)


def test_spot_and_on_demand_prices_come_from_their_own_columns():
    rows = [r for r in csv_rows("aws") if r["AcceleratorName"] == "T4" and r["Region"] == "us-west-2"
            and float(r["AcceleratorCount"]) == 1]
    spot = find_offers(query("T4", backends=("aws",), regions=("us-west-2",), spot_policy=SpotPolicy.SPOT))
    on_demand = find_offers(query("T4", backends=("aws",), regions=("us-west-2",)))
    assert all(o.spot for o in spot) and not any(o.spot for o in on_demand)
    assert spot[0].price == pytest.approx(min(float(r["SpotPrice"]) for r in rows if r["SpotPrice"]))
    assert on_demand[0].price == pytest.approx(min(float(r["Price"]) for r in rows))
    auto = find_offers(query("T4", backends=("aws",), regions=("us-west-2",), spot_policy=SpotPolicy.AUTO))
    assert auto[0] == spot[0] and {o.spot for o in auto} == {True, False}


def test_max_price_excludes_and_says_so():
    offers = find_offers(query("A100:8", backends=("aws",), max_price=34.0))
    assert offers and all(o.price <= 34.0 for o in offers)
    with pytest.raises(NoOfferError) as error:
        find_offers(query("A100:8", backends=("aws",), max_price=5.0))
    message = str(error.value)
    assert "max_price $5/h excluded all of the" in message and "p4d.24xlarge" in message


def test_regions_filter_and_its_explanation():
    offers = find_offers(query("T4", backends=("aws", "gcp"), regions=("eu-west-1", "europe-west4")))
    assert {o.region for o in offers} == {"eu-west-1", "europe-west4"}
    assert {o.backend for o in offers} == {"aws", "gcp"}
    with pytest.raises(NoOfferError, match=r"regions \['mars-1'\] excluded all"):
        find_offers(query("T4", regions=("mars-1",)))


def test_gcp_built_in_gpus_add_the_accelerator_price_of_the_same_zone():
    rows = csv_rows("gcp")
    vm = [r for r in rows if r["InstanceType"] == "a2-highgpu-8g" and r["AvailabilityZone"] == "us-central1-a"][0]
    gpus = [r for r in rows if not r["InstanceType"] and r["AcceleratorName"] == "A100"
            and r["AcceleratorCount"] in ("8", "8.0") and r["AvailabilityZone"] == "us-central1-a"][0]
    offers = find_offers(query("A100:8", backends=("gcp",), availability_zones=("us-central1-a",)))
    a2 = [o for o in offers if o.instance_type == "a2-highgpu-8g"][0]
    assert a2.price == pytest.approx(float(vm["Price"]) + float(gpus["Price"]), abs=1e-5)


def test_gcp_n1_takes_attachable_gpus_within_the_vcpu_limits():
    offers = find_offers(query({"name": ["V100"], "count": 1}, backends=("gcp",), spot_policy=SpotPolicy.AUTO))
    assert offers and all(o.instance_type.startswith("n1-") for o in offers)
    assert max(o.cpus for o in offers) <= 12  # one V100 allows at most 12 vCPUs


def test_gpu_memory_count_total_memory_and_compute_capability():
    by_memory = find_offers(query("80GB:8", backends=("aws", "gcp")))
    assert by_memory and all(o.gpu.memory_gb == 80 and o.gpu.count == 8 for o in by_memory)
    names = {o.gpu.name for o in by_memory}
    assert names <= {"A100", "H100"} and "A100" in names
    total = find_offers(query({"total_memory": "600GB..", "count": "1.."}, backends=("aws",)))
    assert all(o.gpu.count * o.gpu.memory_gb >= 600 for o in total)
    modern = find_offers(query({"compute_capability": "8.9", "count": "1.."}, backends=("aws",)))
    assert {o.gpu.name for o in modern} >= {"L4", "L40S", "H100"} and "T4" not in {o.gpu.name for o in modern}


def test_nodes_multiply_the_total_and_cpu_only_tasks_get_cpu_machines(tmp_path):
    (tmp_path / "t.dstack.yml").write_text("type: task\nnodes: 3\nbackends: [aws]\ncommands: [echo]\n")
    result = run_cli("offers", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "--json", "--max-offers", "1")
    [offer] = json.loads(result.stdout)["offers"]
    assert offer["gpu"] is None and offer["cpus"] >= 2 and offer["memory_gb"] >= 8
    assert offer["total_price"] == pytest.approx(3 * offer["price"])


def test_offers_command_table_and_json():
    table = run_cli("offers", "--gpu", "A100:8", "-b", "aws", "--max-offers", "3")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["#", "BACKEND", "REGION", "INSTANCE", "RESOURCES", "SPOT", "PRICE"]
    assert len(lines) == 4 and "p4d.24xlarge" in lines[1] and "SkyPilot catalog" in table.stderr
    as_json = json.loads(run_cli("offers", "--gpu", "A100:8", "-b", "aws", "--json", "--max-offers", "2").stdout)
    assert len(as_json["offers"]) == 2 and as_json["total"] >= 2
    missing = run_cli("offers", "--gpu", "A100:8", "-b", "aws", "--max-price", "1")
    assert missing.returncode == 3 and "max_price $1/h excluded" in missing.stderr


def test_gpu_memory_is_the_nominal_size_users_write():
    # AWS reports 22888 MiB usable on its 24GB cards; `gpu: 24GB` must still find them.
    names = {o.gpu.name for o in find_offers(query("24GB", backends=("aws",)))}
    assert names == {"A10G", "L4"}


def test_refresh_keeps_the_bundled_families_and_takes_precedence(tmp_path, monkeypatch):
    from dstack_iac.backends.aws.catalog import CATALOG as AWS
    from dstack_iac.backends.gcp.catalog import CATALOG as GCP
    from dstack_iac.offers import catalog
    from dstack_iac.offers.catalog import refreshed_dir
    from dstack_iac.offers.refresh import refresh_catalogs

    SOURCE_URLS = {"aws": AWS.source_url, "gcp": GCP.source_url}
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    catalog.clear_cache()
    # The "download": the bundled tables plus rows of families the catalog leaves out, and
    # p4d.24xlarge in us-east-1 at a new price.
    def fetch(url: str) -> str:
        backend = "aws" if url == SOURCE_URLS["aws"] else "gcp"
        text = (DATA / f"{backend}.csv").read_text()
        if backend == "aws":
            lines = text.splitlines()
            changed = [line.replace(",32.7726,", ",1.2345,") if line.startswith("p4d.24xlarge") and ",us-east-1," in line
                       else line for line in lines]
            return "\n".join(changed + ["x1e.xlarge,,,4.0,122.0,,0.834,0.2,us-east-1,use1-az1"]) + "\n"
        return text + ",,,tpu-v4,1,,us-central2,us-central2-b,1.0,0.5\n"
    try:
        counts = refresh_catalogs([AWS, GCP], fetch=fetch)
        assert counts == {"aws": len(csv_rows("aws")), "gcp": len(csv_rows("gcp"))}
        assert "x1e.xlarge" not in (refreshed_dir() / "aws.csv").read_text()
        catalog.clear_cache()
        cheapest = find_offers(query("A100:8", backends=("aws",), regions=("us-east-1",)))[0]
        assert cheapest.price == pytest.approx(1.2345)
    finally:
        catalog.clear_cache()
