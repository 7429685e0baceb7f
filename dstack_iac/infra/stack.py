"""Stacks of the `dstack-iac` project (Automation API, inline program, file backend by default):
one ephemeral stack per run (named after it), one long-lived stack per volume (`volume-<name>`)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

from dstack_iac import engine
from dstack_iac.infra.local.processes import alive
from dstack_iac.infra.program import StackOutputs


def _auto():
    from pulumi import automation as auto  # slow import: only when a stack is touched

    return auto


def _noop_program() -> None:
    """Destroy needs no program: the dynamic providers are serialized in the state."""


class RunStack:
    def __init__(self, run_name: str, program: Callable[[], None] | None = None):
        self.run_name = run_name
        self._program = program or _noop_program
        self._stack = None

    def _open(self, create: bool):
        if self._stack is None:
            auto = _auto()
            options = engine.workspace_options()
            if create:
                self._stack = auto.create_or_select_stack(self.run_name, engine.PROJECT_NAME, self._program, opts=options)
            else:
                self._stack = auto.select_stack(self.run_name, engine.PROJECT_NAME, self._program, opts=options)
        return self._stack

    def set_tags(self, tags: dict[str, str]) -> None:
        config = {f"dstack:{key}": _auto().ConfigValue(value=value) for key, value in tags.items()}
        self._open(create=True).set_all_config(config)

    def preview(self, on_event: Callable | None = None):
        return self._open(create=True).preview(on_event=on_event)

    def up(self, on_event: Callable | None = None) -> StackOutputs:
        return StackOutputs.model_validate(self.up_raw(on_event=on_event))

    def up_raw(self, on_event: Callable | None = None) -> dict:
        result = self._open(create=True).up(on_event=on_event)
        return {key: value.value for key, value in result.outputs.items()}

    def destroy(self, on_event: Callable | None = None) -> None:
        self._open(create=True).destroy(on_event=on_event)

    def destroy_and_remove(self, on_event: Callable | None = None) -> None:
        stack = self._open(create=True)
        stack.destroy(on_event=on_event)
        stack.workspace.remove_stack(self.run_name)
        self._forget_backups()

    def remove(self) -> None:
        self._open(create=True).workspace.remove_stack(self.run_name, force=True)
        self._forget_backups()

    def release_abandoned_locks(self, wait_seconds: float = 120.0) -> list[int]:
        """Locks of a file-backend stack whose holder died (e.g. an update cut short by Ctrl+C) block
        every later command. Wait for live holders on this host, then delete the locks of dead
        ones. Returns the pids whose locks were released."""
        url = engine.backend_url()
        if not url.startswith("file://"):
            return []
        locks = Path(url.removeprefix("file://")) / ".pulumi" / "locks"
        hostname, deadline, released = socket.gethostname(), time.monotonic() + wait_seconds, []
        for lock in locks.glob(f"*/{engine.PROJECT_NAME}/{self.run_name}/*.json"):
            try:
                holder = json.loads(lock.read_text())
            except (OSError, ValueError):
                continue
            if holder.get("hostname") != hostname:
                continue  # another machine's lock: not ours to judge
            pid = int(holder.get("pid", 0))
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.5)
            if not alive(pid):
                lock.unlink(missing_ok=True)
                Path(f"{lock}.attrs").unlink(missing_ok=True)
                released.append(pid)
        return released

    def _forget_backups(self) -> None:
        """The file backend keeps `<stack>.json.bak` after removal: stale state of a gone stack."""
        url = engine.backend_url()
        if url.startswith("file://"):
            for leftover in Path(url.removeprefix("file://")).glob(f".pulumi/stacks/*/{self.run_name}.json.bak*"):
                leftover.unlink(missing_ok=True)


def existing_stacks() -> set[str]:
    """Names of the run stacks that exist in the backend."""
    auto = _auto()
    workspace = auto.LocalWorkspace(**_workspace_kwargs())
    return {summary.name for summary in workspace.list_stacks()}


def stack_exists(run_name: str) -> bool:
    return run_name in existing_stacks()


def _workspace_kwargs() -> dict:
    options = engine.workspace_options()
    return {"env_vars": options.env_vars, "pulumi_command": options.pulumi_command,
            "project_settings": options.project_settings}
