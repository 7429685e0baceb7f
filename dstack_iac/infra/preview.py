"""`dstack-iac preview`: the real Pulumi preview of a run's stack, in a throwaway stack."""

from __future__ import annotations

import secrets

from pydantic import BaseModel

from dstack_iac.infra.program import run_program
from dstack_iac.infra.stack import RunStack
from dstack_iac.runs.plan import RunPlan

# Inputs that say what a resource is; long or internal ones stay out of the table.
HIDDEN_INPUTS = {"authorized_key", "__provider", "user_data", "metadata_startup_script"}


class PlannedChange(BaseModel):
    op: str
    name: str
    type: str
    properties: str


def _describe(inputs: dict) -> str:
    shown = {k: v for k, v in sorted(inputs.items()) if k not in HIDDEN_INPUTS and v not in (None, "", [], {})}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def preview_run(plan: RunPlan) -> list[PlannedChange]:
    stack_name = f"preview-{plan.run_name}-{secrets.token_hex(3)}"
    host_keys = ssh_cidr = None
    if plan.backend != "local":
        from pydantic import SecretStr

        from dstack_iac.infra.cloud.network import caller_ssh_cidr
        from dstack_iac.infra.cloud.spec import NodeHostKey

        placeholder = NodeHostKey(public="ssh-ed25519 (generated at launch)", private=SecretStr("(generated at launch)"))
        host_keys, ssh_cidr = [placeholder] * plan.nodes, caller_ssh_cidr()
    program = run_program(plan, public_key="ssh-ed25519 (generated at launch)", user="(you)", host_keys=host_keys,
                          ssh_cidr=ssh_cidr)
    stack = RunStack(stack_name, program)
    changes: list[PlannedChange] = []

    def on_event(event) -> None:
        pre = event.resource_pre_event
        if pre is None or pre.metadata.type.startswith("pulumi:"):
            return
        meta = pre.metadata
        inputs = (meta.new.inputs if meta.new else None) or {}
        changes.append(PlannedChange(op=str(meta.op.value), name=meta.urn.rsplit("::", 1)[1],
                                     type=_display_type(meta.type, inputs), properties=_describe(inputs)))

    try:
        stack.preview(on_event=on_event)
    finally:
        stack.remove()
    return changes


def _display_type(resource_type: str, inputs: dict) -> str:
    if resource_type == "pulumi-python:dynamic:Resource" and "node_dir" in inputs:
        return "dstack-iac:local:Node"
    return resource_type
