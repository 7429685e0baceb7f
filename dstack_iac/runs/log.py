"""What a run tells its user, and the output of its nodes, live and saved for `logs`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dstack_iac.paths import open_private_append


def _never_raising(write: Callable[[str], None]) -> Callable[[str], None]:
    """A terminal that went away (SIGHUP, a closed pipe) must not stop a run from tearing down."""

    def safe(text: str) -> None:
        try:
            write(text)
        except (OSError, ValueError):
            pass

    return safe


@dataclass
class RunUI:
    """Where a run's messages go: `say` progress, `warn` problems, `line` node output, `resource`
    engine progress."""

    say: Callable[[str], None] = print
    warn: Callable[[str], None] = print
    line: Callable[[str], None] = print
    resource: Callable[[str], None] = print

    def __post_init__(self) -> None:
        self.say, self.warn = _never_raising(self.say), _never_raising(self.warn)
        self.line, self.resource = _never_raising(self.line), _never_raising(self.resource)


class RunLog:
    """Output of all nodes, live to the terminal and saved to the run's log file."""

    def __init__(self, path: Path, ui: RunUI):
        self._file = open_private_append(path)
        self._lock = threading.Lock()
        self._ui = ui

    def emit(self, text: str) -> None:
        with self._lock:
            try:
                self._file.write(text + "\n")
            except (OSError, ValueError):
                pass  # a full disk loses log lines, never the run's teardown
            self._ui.line(text)

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass
