"""Signals during a run.

The first SIGINT, SIGTERM or SIGHUP asks the run to stop: it is announced at once, and what is
in progress is asked to end the way it can (the engine cancels its update, letting what is in
flight finish and be recorded; the nodes' commands get SIGTERM). The handler raises nothing:
the run notices at its next checkpoint and tears down. A second Ctrl+C means "stop waiting":
the engine's processes are stopped, and the user is told the exact command that finishes the
job (`dstack-iac stop RUN`). From then on Ctrl+C is ignored.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from dstack_iac.errors import ExitStatus, Interrupted

SIGNALS = {signal.SIGINT: ("Interrupted", ExitStatus.INTERRUPTED),
           signal.SIGTERM: ("Terminated", ExitStatus.TERMINATED),
           signal.SIGHUP: ("Hung up", ExitStatus.HANGUP)}


class GaveUp(BaseException):
    """The user's second Ctrl+C: stop waiting for the cleanup."""


def stop_command(run_name: str) -> str:
    return f"dstack-iac stop {run_name}"


class Interrupts:
    def __init__(self, run_name: str, warn: Callable[[str], None]):
        self.run_name = run_name
        self.warn = warn
        self.requested: Interrupted | None = None
        self.gave_up = False
        self.tearing_down = False
        self._stoppers: list[Callable[[], None]] = []
        self._abandon: Callable[[], None] = lambda: None
        self._previous: dict[int, object] = {}
        self._wake = threading.Event()

    # --- installation ------------------------------------------------------------------------

    def install(self, abandon: Callable[[], None]) -> None:
        """Handle the signals (main thread only; elsewhere the caller's handling stays)."""
        self._abandon = abandon
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous.clear()

    # --- what a signal stops -----------------------------------------------------------------

    def while_running(self, stop: Callable[[], None]):
        """A context in which a signal calls `stop` (say, the engine's cancel, the nodes' stop)."""
        interrupts = self

        class _Scope:
            def __enter__(self):
                interrupts._stoppers.append(stop)
                if interrupts.requested is not None:
                    interrupts._run_stopper(stop)
                return self

            def __exit__(self, *exc):
                interrupts._stoppers.remove(stop)
                return False

        return _Scope()

    def checkpoint(self) -> None:
        """Raise the requested interruption, if any: called where stopping is safe."""
        if self.requested is not None and not self.tearing_down:
            raise self.requested

    def sleep(self, seconds: float) -> None:
        """Wait, unless a signal comes first."""
        self._wake.wait(seconds)
        self.checkpoint()

    @property
    def exit_status(self) -> ExitStatus | None:
        return self.requested.exit_status if self.requested is not None else None

    def give_up_now(self) -> None:
        """From now until exit, Ctrl+C is ignored: the user has been told what to run."""
        self.gave_up = True
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self._previous.pop(signal.SIGINT, None)

    # --- the handler -------------------------------------------------------------------------

    def _run_stopper(self, stop: Callable[[], None]) -> None:
        threading.Thread(target=self._quietly, args=(stop,), daemon=True).start()

    @staticmethod
    def _quietly(stop: Callable[[], None]) -> None:
        try:
            stop()
        except Exception:  # noqa: BLE001 - stopping something that is already gone is fine
            pass

    def _on_signal(self, signum, _frame) -> None:
        verb, status = SIGNALS[signal.Signals(signum)]
        if self.gave_up:
            return
        if self.requested is None:
            self.requested = Interrupted(verb, status)
            self._wake.set()
            if self.tearing_down:
                self.warn(f"{verb}: still tearing down {self.run_name}; press Ctrl+C again to stop waiting "
                          f"(then run `{stop_command(self.run_name)}`)")
            else:
                self.warn(f"{verb}: stopping the commands and tearing down (press Ctrl+C again to stop waiting, "
                          f"then run `{stop_command(self.run_name)}`)...")
            for stop in list(self._stoppers):
                self._run_stopper(stop)
            return
        if signum == signal.SIGINT:
            self.give_up_now()
            self._abandon()
            raise GaveUp()
        self.warn(f"{verb}: already stopping {self.run_name}; teardown goes on")
