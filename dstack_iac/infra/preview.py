"""`dstack-iac preview`: the real Pulumi preview of a run's stack, in a throwaway stack."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from dstack_iac.infra.engine import EngineError
from dstack_iac.infra.events import PlannedChange, StackProgress
from dstack_iac.infra.policy import check_findings
from dstack_iac.infra.program import run_program
from dstack_iac.infra.stack import ManagedStack
from dstack_iac.model.backend import Backend
from dstack_iac.model.plan import RunInputs, RunPlan


def preview_run(plan: RunPlan, backend: Backend, inputs: RunInputs, policy_args: Sequence[str] = (),
                progress: StackProgress | None = None) -> list[PlannedChange]:
    """The changes the run's stack would make; with `policy_args` (infra/policy.py), the policy
    packs judge them too: a mandatory violation raises PolicyViolation, with every finding (the
    planned changes and all findings are in `progress` either way)."""
    stack = ManagedStack(f"preview-{plan.run_name}-{secrets.token_hex(3)}")
    progress = progress if progress is not None else StackProgress()
    stack.create()
    try:
        stack.preview(run_program(plan, backend, inputs), on_event=progress, extra_args=policy_args)
    except EngineError:
        check_findings(progress.policy_findings)
        raise
    finally:
        stack.remove(force=True)
    check_findings(progress.policy_findings)
    return progress.planned
