"""`dstack-iac preview`: the real Pulumi preview of a run's stack, in a throwaway stack."""

from __future__ import annotations

import secrets

from dstack_iac.infra.events import PlannedChange, StackProgress
from dstack_iac.infra.program import run_program
from dstack_iac.infra.stack import ManagedStack
from dstack_iac.model.backend import Backend
from dstack_iac.model.plan import RunInputs, RunPlan


def preview_run(plan: RunPlan, backend: Backend, inputs: RunInputs) -> list[PlannedChange]:
    stack = ManagedStack(f"preview-{plan.run_name}-{secrets.token_hex(3)}")
    progress = StackProgress()
    stack.create()
    try:
        stack.preview(run_program(plan, backend, inputs), on_event=progress)
    finally:
        stack.remove(force=True)
    return progress.planned
