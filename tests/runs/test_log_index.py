"""`logs --since` and `--node`: when output was written, and whose it is."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from dstack_iac.errors import BadInput
from dstack_iac.paths import open_private_append
from dstack_iac.runs.log_index import LogIndex, NodeFilter, offset_since, parse_since


def test_since_takes_a_duration_or_an_rfc3339_time():
    assert parse_since("10m", now=1000.0) == 400.0
    assert parse_since("2026-05-01T12:00:00Z") == datetime(2026, 5, 1, 12, tzinfo=timezone.utc).timestamp()
    assert parse_since("2026-05-01T14:00:00+02:00") == datetime(2026, 5, 1, 12, tzinfo=timezone.utc).timestamp()
    with pytest.raises(BadInput, match="--since 'yesterday'"):
        parse_since("yesterday")


def test_the_offset_of_the_first_output_at_or_after_a_time(state_dir, tmp_path):
    log = tmp_path / "run.log"
    log.write_text("")
    index = LogIndex(log, open_private_append)
    for second, line in ((100.2, "a\n"), (100.7, "b\n"), (101.1, "c\n"), (105.0, "d\n")):
        with open(log, "a") as handle:
            handle.write(line)
        index.wrote(line.encode(), now=second)
    index.close()
    text = log.read_bytes()
    assert text[offset_since(log, 0):] == b"a\nb\nc\nd\n"
    assert text[offset_since(log, 100.5):] == b"c\nd\n"  # one entry per second: 100.2 covers a and b
    assert text[offset_since(log, 103):] == b"d\n"
    assert text[offset_since(log, 200):] == b""


def test_node_filter_keeps_whole_lines_of_one_rank():
    out = []
    keep = NodeFilter(1, out.append)
    keep("[0] a\n[1] b\n[1] c")
    keep("d\n[0] e\n")
    keep.flush()
    assert "".join(out) == "[1] b\n[1] cd\n"
