"""When each part of a run's log was written, for `logs --since`: `run.log.times` beside the
log holds `<byte offset> <unix time>` lines, one per second in which the nodes printed (a line
per output line would double the log for chatty tasks; a second is as fine as `--since` gets)."""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from dstack_iac.errors import BadInput

SUFFIX = ".times"


def index_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + SUFFIX)


class LogIndex:
    """Written by the run's log as it grows."""

    def __init__(self, log_path: Path, open_append: Callable[[Path], object]):
        self._offset = log_path.stat().st_size if log_path.exists() else 0
        self._handle = open_append(index_path(log_path))
        self._second: int | None = None

    def wrote(self, data: bytes, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if self._second != int(now):
            self._second = int(now)
            try:
                self._handle.write(f"{self._offset} {now:.3f}\n")
            except (OSError, ValueError):
                pass
        self._offset += len(data)

    def close(self) -> None:
        try:
            self._handle.close()
        except OSError:
            pass


def offset_since(log_path: Path, since: float) -> int:
    """The byte offset of the first output written at or after `since` (the log's end when none)."""
    entries: list[tuple[float, int]] = []
    try:
        for line in index_path(log_path).read_text().splitlines():
            offset, _, stamp = line.partition(" ")
            entries.append((float(stamp), int(offset)))
    except (OSError, ValueError):
        entries = []
    times = [stamp for stamp, _ in entries]
    position = bisect.bisect_left(times, since)
    if position < len(entries):
        return entries[position][1]
    try:
        return log_path.stat().st_size
    except OSError:
        return 0


def parse_since(text: str, now: float | None = None) -> float:
    """`10m`, `2h`, `90s` (that long ago) or an RFC 3339 time (`2026-05-01T12:00:00Z`)."""
    from dstack_iac.config.grammar import parse_duration

    now = time.time() if now is None else now
    try:
        return now - parse_duration(text)
    except (ValueError, TypeError):
        pass
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise BadInput(f"--since {text!r}: give a duration (30s, 10m, 2h) or an RFC 3339 time "
                       "(2026-05-01T12:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


class NodeFilter:
    """Whole lines of one node (`[rank] ` prefixed when the run has several), as text streams in."""

    def __init__(self, rank: int, write: Callable[[str], None]):
        self.prefix = f"[{rank}] "
        self.write = write
        self._partial = ""

    def __call__(self, text: str) -> None:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        kept = [line for line in lines if line.startswith(self.prefix)]
        if kept:
            self.write("".join(line + "\n" for line in kept))

    def flush(self) -> None:
        if self._partial.startswith(self.prefix):
            self.write(self._partial)
        self._partial = ""
