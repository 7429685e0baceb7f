"""What goes along with a run without being the run: the SSH access people use, the reload
sync, the build cache's storage. Each is a `RunHook` handed to the lifecycle, which calls it at
three moments:

    nodes_ready(run)   every node is connected and has the working directory (once per attempt)
    executing(run)     a context around the commands
    ended(run)         before the teardown

A hook never ends a run: what it raises is reported as a warning, and the run goes on (its
teardown above all).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the lifecycle imports this module
    from dstack_iac.runs.lifecycle import Run


class RunHook:
    """No-op defaults: a hook overrides the moments it cares about."""

    name = "hook"

    def nodes_ready(self, run: Run) -> None:
        return None

    def executing(self, run: Run) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def ended(self, run: Run) -> None:
        return None


class RunHooks:
    """The hooks of one run, called in order; failures become warnings."""

    def __init__(self, hooks: Sequence[RunHook] = ()):
        self.hooks = list(hooks)

    @staticmethod
    def _warn(run: Run, hook: RunHook, moment: str, exc: BaseException) -> None:
        run.ui.warn(f"{hook.name} ({moment}) failed: {type(exc).__name__}: {exc}; the run goes on")

    def _guarded(self, run: Run, hook: RunHook, moment: str, call) -> None:
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - a hook is never worth the run
            self._warn(run, hook, moment, exc)

    @contextlib.contextmanager
    def _guarded_context(self, run: Run, hook: RunHook) -> Iterator[None]:
        """`hook.executing(run)` with both of its ends guarded: what it raises on the way in or
        out is a warning, and it never hides (nor replaces) what the commands' side raised."""
        try:
            context = hook.executing(run)
            context.__enter__()
        except Exception as exc:  # noqa: BLE001 - a hook is never worth the run
            self._warn(run, hook, "start", exc)
            yield
            return
        try:
            yield
        except BaseException as raised:
            try:
                context.__exit__(type(raised), raised, raised.__traceback__)
            except Exception as exc:  # noqa: BLE001
                if exc is not raised:
                    self._warn(run, hook, "exit", exc)
            raise
        try:
            context.__exit__(None, None, None)
        except Exception as exc:  # noqa: BLE001
            self._warn(run, hook, "exit", exc)

    def nodes_ready(self, run: Run) -> None:
        for hook in self.hooks:
            self._guarded(run, hook, "nodes ready", lambda hook=hook: hook.nodes_ready(run))

    @contextlib.contextmanager
    def executing(self, run: Run) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for hook in self.hooks:
                stack.enter_context(self._guarded_context(run, hook))
            yield

    def ended(self, run: Run) -> None:
        for hook in self.hooks:
            self._guarded(run, hook, "end", lambda hook=hook: hook.ended(run))
