"""Review before anything is created: the run's real Pulumi preview, judged by the policy packs,
as a plan document (infra/reviewed_plan.py), compared with a reviewed plan when the run is given
one. `preview` shows or saves the document; `run` calls `review_run` first when it has policy
packs or a plan, so a refusal happens while nothing exists.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dstack_iac.infra.events import StackProgress
from dstack_iac.infra.policy import PolicyPack, PolicyViolation, engine_args, resolve_packs
from dstack_iac.infra.preview import preview_run
from dstack_iac.infra.reviewed_plan import PlanMismatch, differences, load_plan, plan_document
from dstack_iac.model.backend import Backend
from dstack_iac.model.plan import RunPlan


@dataclass
class Guardrails:
    """What a run is held to before it starts: policy packs, and the plan a person reviewed."""

    packs: list[PolicyPack] = field(default_factory=list)
    reviewed: dict | None = None
    reviewed_path: Path | None = None

    @property
    def active(self) -> bool:
        return bool(self.packs) or self.reviewed is not None

    @classmethod
    def from_flags(cls, policy_packs: Sequence[Path] = (), policy_configs: Sequence[Path] = (),
                   plan_file: Path | None = None) -> Guardrails:
        reviewed = load_plan(plan_file) if plan_file is not None else None
        return cls(packs=resolve_packs(policy_packs, policy_configs), reviewed=reviewed, reviewed_path=plan_file)


@dataclass
class Review:
    document: dict
    progress: StackProgress
    violation: PolicyViolation | None = None


def review_run(plan: RunPlan, backend: Backend, guardrails: Guardrails,
               on_finding: Callable[[str], None] | None = None, *, raise_violation: bool = True) -> Review:
    """The preview of `plan` as a document, with the policy packs' findings. Raises
    PolicyViolation on a mandatory violation (or returns it in the Review, without
    `raise_violation`), and PlanMismatch when a reviewed plan was given and differs."""
    progress = StackProgress(on_policy=on_finding)
    violation = None
    with tempfile.TemporaryDirectory(prefix="dstack-iac-review-") as scratch:
        inputs = backend.prepare(plan, Path(scratch), preview=True)
        try:
            preview_run(plan, backend, inputs, engine_args(guardrails.packs, Path(scratch)), progress=progress)
        except PolicyViolation as exc:
            if raise_violation:
                raise
            violation = exc
    document = plan_document(plan, progress.planned, hidden=backend.hidden_inputs,
                             per_launch=backend.per_launch_inputs, findings=progress.policy_findings,
                             packs=guardrails.packs)
    if guardrails.reviewed is not None:
        found = differences(guardrails.reviewed, document)
        if found:
            raise PlanMismatch(guardrails.reviewed_path or Path("plan"), found)
    return Review(document=document, progress=progress, violation=violation)
