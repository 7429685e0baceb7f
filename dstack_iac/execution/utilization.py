"""`utilization_policy`: the nodes' GPU utilization, sampled with `nvidia-smi` over the run's own
SSH connections, and the rule that stops a run whose every GPU stayed below the threshold for
the whole time window.

A sample is one short command on a channel of an existing connection (no new login), every
window/10 seconds (at most every 30 s), so sampling costs nothing the run could notice.
"""

from __future__ import annotations

import os
import shlex
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Shortens the window (seconds), for tests and demonstrations of the policy.
WINDOW_OVERRIDE_ENV = "DSTACK_IAC_UTILIZATION_WINDOW"
QUERY = "nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits"


@dataclass(frozen=True)
class Sample:
    at: float
    utilizations: tuple[int, ...]  # one per GPU of every node sampled


def parse_nvidia_smi(text: str) -> list[int]:
    """`nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits`: a percent per line."""
    values = []
    for line in text.splitlines():
        line = line.strip().rstrip("%").strip()
        if line.isdigit():
            values.append(int(line))
    return values


def idle_for_window(samples: Sequence[Sample], now: float, window: float, threshold: int) -> bool:
    """Whether every GPU stayed below `threshold` through the last `window` seconds: the samples
    must reach back to the window's start (a run younger than the window is never idle)."""
    recent = [s for s in samples if s.at >= now - window]
    if not recent or not any(s.at <= now - window for s in samples):
        return False
    return all(s.utilizations and max(s.utilizations) < threshold for s in recent)


def window_seconds(configured: int) -> float:
    override = os.environ.get(WINDOW_OVERRIDE_ENV)
    return float(override) if override else float(configured)


class UtilizationWatch:
    """Samples every node while the commands run; calls `on_idle` once when the policy says stop."""

    def __init__(self, sessions: Sequence, window: float, threshold: int, on_idle: Callable[[float], None],
                 venv_dirs: Sequence[str] = ()):
        self.sessions = list(sessions)
        self.window = window
        self.threshold = threshold
        self.on_idle = on_idle
        self.interval = min(30.0, max(0.2, window / 10))
        self.samples: deque[Sample] = deque()
        self._stop = threading.Event()
        # The task's venv is on its PATH: a stand-in or venv-installed nvidia-smi is found too.
        self._commands = [f'PATH={shlex.quote(venv + "/bin")}:"$PATH" {QUERY} 2>/dev/null' for venv in venv_dirs] or \
            [f"{QUERY} 2>/dev/null"] * len(self.sessions)

    def sample_once(self) -> Sample | None:
        values: list[int] = []
        for session, command in zip(self.sessions, self._commands):
            try:
                values += parse_nvidia_smi(session.command_output(command))
            except Exception:  # noqa: BLE001 - a node without nvidia-smi (or busy) is not sampled
                continue
        return Sample(time.monotonic(), tuple(values)) if values else None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            sample = self.sample_once()
            if sample is None:
                continue
            self.samples.append(sample)
            while self.samples and self.samples[0].at < sample.at - 2 * self.window:
                self.samples.popleft()
            if idle_for_window(self.samples, sample.at, self.window, self.threshold):
                self.on_idle(self.window)
                return

    def __enter__(self) -> UtilizationWatch:
        first = self.sample_once()
        if first is not None:
            self.samples.append(first)
        threading.Thread(target=self._loop, daemon=True, name="utilization").start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
