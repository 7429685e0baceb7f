"""Policy packs as the CLI and the team's environment give them (infra/policy.py): pure parts."""

from __future__ import annotations

import json
import os

import pytest

from dstack_iac.infra.policy import (PolicyFinding, PolicyPackError, PolicyViolation, check_findings, engine_args,
                                     packs_of_plan, plan_entries, resolve_packs)
from tests.helpers import REPO

GUARDRAILS = REPO / "policies" / "dstack-iac-guardrails"
WITNESS = REPO / "tests" / "fixtures" / "policy-witness"


def test_the_teams_packs_come_first_and_a_pack_named_twice_runs_once(monkeypatch, tmp_path):
    config = tmp_path / "limits.json"
    config.write_text(json.dumps({"max-nodes-per-run": {"maxNodes": 2}}))
    monkeypatch.setenv("DSTACK_IAC_POLICY_PACKS", f"{GUARDRAILS}={config}{os.pathsep}")
    packs = resolve_packs([WITNESS, GUARDRAILS])
    assert [(p.name, p.source) for p in packs] == [("dstack-iac-guardrails", "$DSTACK_IAC_POLICY_PACKS"),
                                                   ("policy-witness", "--policy-pack")]
    args = engine_args(packs, tmp_path)
    assert args[:4] == ["--policy-pack", str(GUARDRAILS), "--policy-pack", str(WITNESS)]
    assert args[4:6] == ["--policy-pack-config", str(config)] and args[6] == "--policy-pack-config"
    assert json.loads(open(args[7]).read()) == {}, "a pack without a config gets an empty one, by position"
    # As a RunPlan keeps them, for the update itself (and a detached run's supervisor).
    again = packs_of_plan(plan_entries(packs))
    assert [(p.directory, p.config) for p in again] == [(p.directory, p.config) for p in packs]


def test_bad_packs_are_refused_by_name(monkeypatch, tmp_path):
    monkeypatch.delenv("DSTACK_IAC_POLICY_PACKS", raising=False)
    with pytest.raises(PolicyPackError, match="not a policy pack"):
        resolve_packs([tmp_path])
    (tmp_path / "PulumiPolicy.yaml").write_text("name: x\nruntime: nodejs\n")
    with pytest.raises(PolicyPackError, match="runtime 'nodejs' is not supported"):
        resolve_packs([tmp_path])
    with pytest.raises(PolicyPackError, match="given 1 times for 2"):
        resolve_packs([GUARDRAILS, WITNESS], [tmp_path / "c.json"])


def test_only_mandatory_findings_stop_a_run():
    advisory = PolicyFinding(pack="p", policy="a", enforcement="advisory", message="just so you know")
    mandatory = PolicyFinding(pack="p", policy="m", enforcement="mandatory", message="no\n  way",
                              resource_urn="urn:pulumi:s::dstack-iac::dstack-iac:run:Offer::offer")
    check_findings([advisory])
    with pytest.raises(PolicyViolation) as raised:
        check_findings([advisory, mandatory])
    assert str(raised.value.message).startswith("1 mandatory policy violated:")
    assert "[mandatory] m (p) on dstack-iac:run:Offer offer: no way" in raised.value.message
    assert "just so you know" not in raised.value.message
