"""Reviewable plans: what `preview --json` prints and `preview --save-plan FILE` saves, and the
check `run --plan FILE` makes before creating anything.

The document (format `dstack-iac/plan@1`, described in docs/teams.md) holds the run's name, the
normalised configuration (environment values masked: they may be secrets), the chosen offer and
its price, every resource the preview would create with its type, name and properties (secrets,
keys and scripts masked; values chosen anew by every launch, such as a local node's directory,
marked so), the totals, and the policy packs' findings. Two previews of an unchanged
configuration give the same document apart from `created_at`.

`differences(saved, current)` lists, for people, what changed between the reviewed plan and the
plan of now: a run refuses to start when the list is not empty.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dstack_iac.errors import BadInput
from dstack_iac.infra.events import PlannedChange
from dstack_iac.infra.policy import PolicyFinding, PolicyPack
from dstack_iac.model.plan import RunPlan

PLAN_FORMAT = "dstack-iac/plan@1"
SECRET_SIGNATURE = "4dabf18193072939515e22adb298388d"  # the engine's marker of a secret value
SECRET = "[secret]"
HIDDEN = "[hidden]"
PER_LAUNCH = "[set at launch]"
ENGINE_INTERNAL = ("__provider",)


class PlanFileError(BadInput):
    pass


class PlanMismatch(BadInput):
    """The run's plan of now is not the reviewed one: nothing was created."""

    def __init__(self, path: Path, differences: Sequence[str]):
        self.differences = list(differences)
        listing = "\n".join(f"  {line}" for line in self.differences)
        super().__init__(f"the run differs from the reviewed plan {path}:\n{listing}",
                         hint="review the new plan (`dstack-iac preview --save-plan FILE`) and run that one")


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def mask_value(value: Any) -> Any:
    """A property value with every secret in it replaced by "[secret]"."""
    if isinstance(value, dict):
        if SECRET_SIGNATURE in value:
            return SECRET
        return {key: mask_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_value(item) for item in value]
    return value


def resource_properties(inputs: Mapping[str, Any], hidden: Iterable[str], per_launch: Iterable[str]) -> dict:
    """A resource's inputs as the document shows them."""
    hidden, per_launch = set(hidden), set(per_launch)
    shown = {}
    for key, value in sorted(inputs.items()):
        if key in ENGINE_INTERNAL:
            continue
        if key in hidden or _snake(key) in hidden:
            shown[key] = HIDDEN
        elif key in per_launch or _snake(key) in per_launch:
            shown[key] = PER_LAUNCH
        else:
            shown[key] = mask_value(value)
    return shown


def configuration_view(plan: RunPlan) -> dict:
    """The normalised configuration as reviewed: environment values masked."""
    data = plan.configuration.model_dump(mode="json")
    if isinstance(data.get("env"), dict):
        data["env"] = {key: HIDDEN for key in data["env"]}
    return data


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def plan_document(plan: RunPlan, changes: Sequence[PlannedChange], *, hidden: Iterable[str] = (),
                  per_launch: Iterable[str] = (), findings: Sequence[PolicyFinding] = (),
                  packs: Sequence[PolicyPack] = ()) -> dict:
    hidden, per_launch = frozenset(hidden), frozenset(per_launch)
    configuration = configuration_view(plan)
    resources = [{"op": change.op, "type": change.type, "name": change.name,
                  "properties": resource_properties(change.inputs, hidden, per_launch)} for change in changes]
    # The engine reports resources as it gets to them, in no fixed order: the document has one.
    resources.sort(key=lambda resource: (resource["type"], resource["name"]))
    totals: dict[str, int] = {}
    for resource in resources:
        totals[resource["op"]] = totals.get(resource["op"], 0) + 1
    return {
        "format": PLAN_FORMAT,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run_name": plan.run_name,
        "configuration": {"path": plan.configuration_path, "run_args": list(plan.run_args),
                          "sha256": _digest({"configuration": configuration, "run_args": list(plan.run_args)}),
                          "normalized": configuration},
        "backend": plan.backend,
        "offer": plan.offer.model_dump(mode="json"),
        "nodes": plan.nodes,
        "price": {"currency": "USD", "per_node_per_hour": plan.offer.price,
                  "total_per_hour": round(plan.total_price, 6)},
        "resources": resources,
        "totals": {"resources": len(resources), **dict(sorted(totals.items()))},
        "policy_packs": [{"name": pack.name, "version": pack.version, "directory": str(pack.directory)}
                         for pack in packs],
        "policy_findings": [finding.model_dump(mode="json") for finding in findings],
    }


def save_plan(document: dict, path: Path) -> None:
    from dstack_iac.paths import write_private

    write_private(path.resolve(), json.dumps(document, indent=2) + "\n", mode=0o644)


def load_plan(path: Path) -> dict:
    try:
        document = json.loads(Path(path).read_text())
    except OSError as exc:
        raise PlanFileError(f"--plan {path}: cannot be read ({exc.strerror})") from None
    except ValueError as exc:
        raise PlanFileError(f"--plan {path}: not a plan saved by `dstack-iac preview --save-plan` ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != PLAN_FORMAT:
        found = document.get("format") if isinstance(document, dict) else None
        raise PlanFileError(f"--plan {path}: format {found!r} is not {PLAN_FORMAT!r} (save it with "
                            "`dstack-iac preview --save-plan FILE`)")
    for key in ("run_name", "configuration", "offer", "resources"):
        if key not in document:
            raise PlanFileError(f"--plan {path}: the plan has no {key!r}")
    return document


def _yaml_lines(data: Any) -> list[str]:
    import yaml

    return yaml.safe_dump(data, sort_keys=True).splitlines()


def _resource_key(resource: Mapping) -> tuple[str, str]:
    return resource.get("type", ""), resource.get("name", "")


def differences(saved: Mapping, current: Mapping) -> list[str]:
    """What changed from the reviewed plan to the plan of now (empty: the same plan)."""
    found: list[str] = []
    if saved.get("run_name") != current.get("run_name"):
        found.append(f"run name: {saved.get('run_name')} (reviewed) -> {current.get('run_name')}")
    saved_conf, current_conf = saved.get("configuration", {}), current.get("configuration", {})
    if saved_conf.get("sha256") != current_conf.get("sha256"):
        diff = list(difflib.unified_diff(
            _yaml_lines({"configuration": saved_conf.get("normalized"), "run_args": saved_conf.get("run_args")}),
            _yaml_lines({"configuration": current_conf.get("normalized"), "run_args": current_conf.get("run_args")}),
            "reviewed", "now", lineterm="", n=1))
        found.append("configuration changed:")
        found += [f"  {line}" for line in diff[2:]] or ["  (the normalised configuration differs)"]
    saved_offer, current_offer = saved.get("offer", {}), current.get("offer", {})
    for key in sorted(set(saved_offer) | set(current_offer)):
        if saved_offer.get(key) != current_offer.get(key):
            found.append(f"offer {key}: {saved_offer.get(key)!r} (reviewed) -> {current_offer.get(key)!r}")
    if saved.get("nodes") != current.get("nodes"):
        found.append(f"nodes: {saved.get('nodes')} (reviewed) -> {current.get('nodes')}")
    before = {_resource_key(r): r for r in saved.get("resources", [])}
    after = {_resource_key(r): r for r in current.get("resources", [])}
    for key in sorted(set(before) - set(after)):
        found.append(f"resource {key[1]} ({key[0]}) is no longer planned")
    for key in sorted(set(after) - set(before)):
        found.append(f"resource {key[1]} ({key[0]}) is new: {after[key].get('op')}")
    for key in sorted(set(before) & set(after)):
        old, new = before[key], after[key]
        if old.get("op") != new.get("op"):
            found.append(f"resource {key[1]} ({key[0]}): {old.get('op')} (reviewed) -> {new.get('op')}")
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        for prop in sorted(set(old_props) | set(new_props)):
            if old_props.get(prop) != new_props.get(prop):
                found.append(f"resource {key[1]} ({key[0]}) {prop}: {old_props.get(prop)!r} (reviewed) -> "
                             f"{new_props.get(prop)!r}")
    return found
