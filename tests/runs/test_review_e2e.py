"""Reviewable plans and policy guardrails end to end on the local backend, through the CLI: the
plan document of `preview --json`, `preview --save-plan` then `run --plan` applying exactly it
(and refusing, before creating anything, once the configuration changed), and a policy pack
refusing a run and a preview with its own message while nothing is provisioned. The packs run
in the real engine (through the package's language host's RunPlugin)."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from tests.helpers import REPO, assert_nothing_left, dstack, stack_files, write_task

pytestmark = pytest.mark.e2e
GUARDRAILS = REPO / "policies" / "dstack-iac-guardrails"
WITNESS = REPO / "tests" / "fixtures" / "policy-witness"
SECRET_VALUE = "s3cret-token-value"


def test_a_saved_plan_is_applied_exactly_and_a_changed_one_is_refused(e2e_home, tmp_path):
    task = write_task(tmp_path, f"name: reviewed\nenv:\n  TOKEN: {SECRET_VALUE}\ncommands:\n  - echo one\n")

    shown = dstack(e2e_home, "preview", str(tmp_path), "-f", str(task), "--json")
    assert shown.returncode == 0, shown.stderr
    assert SECRET_VALUE not in shown.stdout
    document = json.loads(shown.stdout)
    assert document["format"] == "dstack-iac/plan@1" and document["backend"] == "local"
    assert document["offer"]["backend"] == "local" and document["nodes"] == 1
    assert document["price"] == {"currency": "USD", "per_node_per_hour": 0.0, "total_per_hour": 0.0}
    assert document["configuration"]["normalized"]["env"] == {"TOKEN": "[hidden]"}
    resources = {(r["type"], r["name"]): r for r in document["resources"]}
    assert set(resources) == {("dstack-iac:run:Offer", "offer"), ("dstack-iac:local:TaskCluster", "run"),
                              ("dstack-iac:local:Node", "node-0")}
    node = resources[("dstack-iac:local:Node", "node-0")]["properties"]
    assert node["rank"] == 0 and node["authorized_key"] == "[hidden]" and node["node_dir"] == "[set at launch]"
    assert resources[("dstack-iac:run:Offer", "offer")]["properties"]["nodes"] == 1
    assert document["totals"] == {"resources": 3, "create": 3}

    plan = tmp_path / "plan.json"
    saved = dstack(e2e_home, "preview", str(tmp_path), "-f", str(task), "--save-plan", str(plan))
    assert saved.returncode == 0, saved.stderr
    assert f"run --plan {plan}" in saved.stderr
    assert SECRET_VALUE not in plan.read_text()

    # Applied as reviewed; the witness pack shows the update itself was judged too (its own process).
    witness_log = tmp_path / "witness.log"
    applied = dstack(e2e_home, "run", str(tmp_path), "-f", str(task), "--plan", str(plan), "-y",
                     "--policy-pack", str(WITNESS), env={"DSTACK_IAC_TEST_POLICY_LOG": str(witness_log)})
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert f"The plan is the reviewed one ({plan})" in applied.stderr and "one" in applied.stdout
    seen: dict[str, set[str]] = defaultdict(set)
    for line in witness_log.read_text().splitlines():
        pid, resource_type, _name = line.split()
        seen[pid].add(resource_type)
    assert len(seen) == 2, seen
    assert all("dstack-iac:local:Node" in types for types in seen.values()), seen
    assert_nothing_left(e2e_home)

    # The configuration changed since the review: refused, with the difference, and nothing made.
    write_task(tmp_path, f"name: reviewed\nenv:\n  TOKEN: {SECRET_VALUE}\ncommands:\n  - echo two\n")
    refused = dstack(e2e_home, "run", str(tmp_path), "-f", str(task), "--plan", str(plan), "-y")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"the run differs from the reviewed plan {plan}" in refused.stderr
    assert "configuration changed" in refused.stderr
    assert "-  - echo one" in refused.stderr and "+  - echo two" in refused.stderr
    assert "nothing was provisioned" in refused.stderr
    assert "two" not in refused.stdout
    assert_nothing_left(e2e_home)
    runs = json.loads(dstack(e2e_home, "ps", "--all", "--json").stdout)
    assert [(r["name"], r["status"]) for r in runs] == [("reviewed", "done")], "the refused run never started"


def test_a_mandatory_policy_stops_the_preview_and_the_run_with_its_message(e2e_home, tmp_path):
    task = write_task(tmp_path, "name: pair\nnodes: 2\ncommands:\n  - echo never\n")
    limits = tmp_path / "limits.json"
    limits.write_text(json.dumps({"max-nodes-per-run": {"maxNodes": 1}}))
    message = "max-nodes-per-run (dstack-iac-guardrails) on dstack-iac:run:Offer offer"
    reason = "the run asks for 2 nodes (local), over the limit of 1 per run"
    flags = ["--policy-pack", str(GUARDRAILS), "--policy-pack-config", str(limits)]

    previewed = dstack(e2e_home, "preview", str(tmp_path), "-f", str(task), *flags)
    assert previewed.returncode == 2, previewed.stdout + previewed.stderr
    assert "1 mandatory policy violated" in previewed.stderr
    assert message in previewed.stderr and reason in previewed.stderr
    assert "nothing was provisioned" in previewed.stderr
    assert "4 to create; nothing was created." in previewed.stdout, "the plan is still shown for review"

    refused = dstack(e2e_home, "run", str(tmp_path), "-f", str(task), "-y", *flags)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert message in refused.stderr and reason in refused.stderr
    assert "nothing was provisioned" in refused.stderr and "never" not in refused.stdout
    assert stack_files(e2e_home) == [] and not list(e2e_home.glob("runs/*"))
    assert_nothing_left(e2e_home)
