"""The one translator of Pulumi engine events: progress lines while a stack changes, the planned
changes of a preview, the engine's own error messages.

Durations are measured here, on arrival (the events' own timestamps are whole seconds)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from pydantic import BaseModel

INTERNAL_TYPE_PREFIX = "pulumi:"  # the stack itself and provider instances: not the user's resources
_VERBS = {"create": "created", "delete": "deleted", "same": "kept", "update": "updated", "replace": "replaced",
          "create-replacement": "created (replacement)", "delete-replaced": "deleted (replaced)",
          "read": "read", "import": "imported"}


def resource_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


class PlannedChange(BaseModel):
    op: str
    name: str
    type: str
    inputs: dict = {}


class StackProgress:
    """Turns events into lines for `say` ("created node-0 (dstack-iac:local:Node) in 0.42s"), and
    keeps the engine's error diagnostics and, for previews, the planned changes."""

    def __init__(self, say: Callable[[str], None] | None = None, on_policy: Callable[[str], None] | None = None):
        self.say = say
        self.on_policy = on_policy  # advisory policy findings, as they come (mandatory ones fail the update)
        self.errors: list[str] = []
        self.planned: list[PlannedChange] = []
        self.policy_findings: list = []  # PolicyFinding, one per policyEvent (infra/policy.py)
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, event) -> None:
        with self._lock:
            self._on_event(event)

    def _on_event(self, event) -> None:
        if event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
            self._started[meta.urn] = time.monotonic()
            if not meta.type.startswith(INTERNAL_TYPE_PREFIX):
                inputs = (meta.new.inputs if meta.new else None) or (meta.old.inputs if meta.old else None) or {}
                self.planned.append(PlannedChange(op=str(meta.op.value), name=resource_name(meta.urn),
                                                  type=meta.type, inputs=dict(inputs)))
        elif event.res_outputs_event is not None:
            meta = event.res_outputs_event.metadata
            if meta.type.startswith(INTERNAL_TYPE_PREFIX) or self.say is None:
                return
            took = time.monotonic() - self._started.get(meta.urn, time.monotonic())
            verb = _VERBS.get(str(meta.op.value), str(meta.op.value))
            self.say(f"{verb} {resource_name(meta.urn)} ({meta.type}) in {took:.2f}s")
        elif event.res_op_failed_event is not None:
            meta = event.res_op_failed_event.metadata
            if self.say is not None:
                self.say(f"failed {resource_name(meta.urn)} ({meta.type})")
        elif event.diagnostic_event is not None:
            diagnostic = event.diagnostic_event
            if diagnostic.severity == "error" and diagnostic.message.strip():
                self.errors.append(diagnostic.message.strip())
        elif getattr(event, "policy_event", None) is not None:
            from dstack_iac.infra.policy import finding_from_event

            finding = finding_from_event(event.policy_event)
            self.policy_findings.append(finding)
            if self.on_policy is not None and not finding.mandatory:
                self.on_policy(f"policy: {finding.describe()}")

    def error_text(self) -> str:
        return "\n".join(dict.fromkeys(self.errors))


def describe_inputs(inputs: dict, hidden: Iterable[str]) -> str:
    """`key=value, ...` of a resource's meaningful inputs, secrets and long internals left out."""
    hidden = set(hidden) | {"__provider"}
    shown = {k: v for k, v in sorted(inputs.items()) if k not in hidden and v not in (None, "", [], {})}
    return ", ".join(f"{k}={_value(v)}" for k, v in shown.items())


def _value(value) -> str:
    if isinstance(value, dict) and "4dabf18193072939515e22adb298388d" in value:
        return "[secret]"
    return str(value)
