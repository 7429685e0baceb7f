"""What a run tells its user, and the output of its nodes, live and saved for `logs`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
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


MASK = "***"


def masking(secrets: Sequence[str]) -> Callable[[str], str]:
    """A filter that hides every secret value in a line, longest first (a secret that contains
    another is hidden whole)."""
    ordered = sorted({secret for secret in secrets if secret}, key=len, reverse=True)

    def mask(text: str) -> str:
        for secret in ordered:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    return mask


class RunLog:
    """Output of all nodes, live to the terminal and saved to the run's log file, with the run's
    secrets masked (a task that prints a secret shows `***`, in the terminal and in the file)."""

    def __init__(self, path: Path, ui: RunUI, secrets: Sequence[str] = ()):
        from dstack_iac.runs.log_index import LogIndex

        self._file = open_private_append(path)
        self._index = LogIndex(path, open_private_append)  # for `logs --since`
        self._lock = threading.Lock()
        self._ui = ui
        self._mask = masking(secrets)

    def emit(self, text: str) -> None:
        text = self._mask(text)
        with self._lock:
            try:
                self._file.write(text + "\n")
                self._index.wrote((text + "\n").encode("utf-8", errors="replace"))
            except (OSError, ValueError):
                pass  # a full disk loses log lines, never the run's teardown
            self._ui.line(text)

    def close(self) -> None:
        with self._lock:
            try:
                self._file.close()
            except OSError:
                pass
            self._index.close()
