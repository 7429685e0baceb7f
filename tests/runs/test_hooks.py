"""Hooks never end a run: what one raises entering or leaving `executing` is a warning, and what
the commands' side raises is never hidden by a hook."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest

from dstack_iac.runs.hooks import RunHook, RunHooks


class Hook(RunHook):
    def __init__(self, name: str, fail_on: str | None, calls: list):
        self.name, self.fail_on, self.calls = name, fail_on, calls

    @contextlib.contextmanager
    def executing(self, run):
        if self.fail_on == "enter":
            raise RuntimeError("cannot start")
        self.calls.append(f"{self.name} in")
        try:
            yield
        finally:
            self.calls.append(f"{self.name} out")
            if self.fail_on == "exit":
                raise RuntimeError("cannot end")


def _run():
    warnings: list[str] = []
    return SimpleNamespace(ui=SimpleNamespace(warn=warnings.append)), warnings


def test_a_hook_failing_on_entry_or_exit_is_a_warning_and_the_others_still_run():
    run, warnings = _run()
    calls: list[str] = []
    hooks = RunHooks([Hook("a", "exit", calls), Hook("b", "enter", calls), Hook("c", None, calls)])
    with hooks.executing(run):
        calls.append("commands")
    assert calls == ["a in", "c in", "commands", "c out", "a out"]
    assert warnings == ["b (start) failed: RuntimeError: cannot start; the run goes on",
                        "a (exit) failed: RuntimeError: cannot end; the run goes on"]


def test_what_the_commands_side_raises_goes_through_a_failing_hook():
    run, warnings = _run()
    calls: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with RunHooks([Hook("a", "exit", calls)]).executing(run):
            raise KeyboardInterrupt
    assert calls == ["a in", "a out"]
    assert warnings == ["a (exit) failed: RuntimeError: cannot end; the run goes on"]
