"""Finding and removing what a run left in a cloud account when no stack knows it any more.

Every resource a run creates is tagged `dstack-iac:run` (labels on GCP), so a sweeper that only
looked at stacks would still find it. Discovery is a Pulumi program of invokes (the cloud's
tag search), run in a throwaway preview; removal adopts the resources into a stack of their own
with `pulumi import` and destroys it, in phases (instances first: their security groups and
firewalls cannot go while they run).
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from dstack_iac.infra.stack import ManagedStack
from dstack_iac.model.backend import Orphan

GC_STACK_PREFIX = "gc-"


def discover(program: Callable[[Callable[[list[Orphan]], None]], None]) -> list[Orphan]:
    """Run a discovery program (it calls back with what it found) in a throwaway stack."""
    found: list[Orphan] = []
    stack = ManagedStack(f"{GC_STACK_PREFIX}scan-{secrets.token_hex(3)}")
    stack.create()
    try:
        stack.preview(lambda: program(found.extend))
    finally:
        stack.remove(force=True)
    return found


def import_file(orphans: Sequence[Orphan], import_id: Callable[[Orphan], str]) -> dict:
    """What `pulumi import --file` adopts: one entry per resource, named after its id."""
    return {"resources": [{"type": o.type, "name": o.id.rsplit("/", 1)[-1], "id": import_id(o)} for o in orphans]}


def remove(run_name: str, phases: Sequence[Sequence[Orphan]], import_id: Callable[[Orphan], str]) -> list[str]:
    """Adopt and destroy each phase of resources in turn; what was removed."""
    removed: list[str] = []
    for index, orphans in enumerate(phase for phase in phases if phase):
        stack = ManagedStack(f"{GC_STACK_PREFIX}{run_name}-{index}")
        stack.create()
        with tempfile.TemporaryDirectory(prefix="dstack-iac-gc-") as scratch:
            spec = Path(scratch) / "import.json"
            spec.write_text(json.dumps(import_file(orphans, import_id)))
            stack.engine.run(["import", "--file", str(spec), "--yes", "--skip-preview", "--protect=false",
                              "--generate-code=false", "--stack", stack.name])
        stack.destroy(remove=True)
        removed += [f"{o.type} {o.id}" for o in orphans]
    return removed
