"""When the backend cannot keep run records (gs://, azblob://, Pulumi Cloud) or cannot be reached,
runs and this machine's own commands go on: records stay in the state dir, and the user is told
once what team features need. Also the pure parts of remote logs: a bound's marker is never
faked by the run's own output, and `--since` finds its offset in the shipped time index."""

from __future__ import annotations

import os
import socket
import time

import pytest

from dstack_iac.state import backend_records, runs, team, volumes
from dstack_iac.state.runs import RunRecord, RunStatus
from dstack_iac.state.volumes import VolumeRecord


def record(name: str = "r", **changes) -> RunRecord:
    fields = dict(name=name, status=RunStatus.RUNNING, backend="local", nodes=1, configuration="t.dstack.yml",
                  owner_pid=os.getpid(), owner="alice", created_at=time.time())
    return RunRecord(**{**fields, **changes})


@pytest.mark.parametrize("url", ["gs://team-bucket/state", "azblob://team-container", "https://api.pulumi.com"])
def test_a_backend_without_a_record_store_runs_with_local_records_and_one_note(state_dir, monkeypatch, url):
    monkeypatch.setenv("PULUMI_BACKEND_URL", url)
    notes: list[str] = []
    claim = runs.claim(record("solo"), note=notes.append)
    try:
        [note] = notes
        assert "Run records stay on this machine" in note and "need an s3:// or file://" in note
        assert "docs/teams.md" in note
        assert runs.load("solo").generation == 0, "nothing was published"
        assert backend_records.all_records() == {} and backend_records.heartbeats().ages == {}
        shown: list[str] = []
        assert [view.name for view in team.list_runs(note=shown.append)] == ["solo"]
        assert shown == [note]
        assert team.find_run("solo").here
        volumes.save(VolumeRecord(name="data", backend="local", directory="/tmp/x"))
        assert volumes.load("data") is not None and volumes.shared_volumes() == []
        volumes.forget("data")
    finally:
        claim.release()


def test_a_backend_with_a_record_store_says_nothing(state_dir):
    notes: list[str] = []
    claim = runs.claim(record("kept"), note=notes.append)
    claim.release()
    assert notes == [] and runs.load("kept").generation == 1


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_backend_leaves_this_machines_runs_and_volumes_usable(state_dir, monkeypatch):
    claim = runs.claim(record("mine"))
    claim.release()
    runs.save(runs.load("mine").model_copy(update={"generation": 0}))  # as the local record was, unpublished
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"s3://b?endpoint=127.0.0.1:{_closed_port()}&disableSSL=true"
                                             "&s3ForcePathStyle=true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    view = team.find_run("mine")
    assert view is not None and view.here and view.record.name == "mine"
    from dstack_iac.state.blobs import StoreError

    with pytest.raises(StoreError, match="cannot be reached"):
        team.find_run("nobody-s")  # not this machine's: the backend's answer is needed, and said missing
    volumes.save(VolumeRecord(name="vol", backend="local", directory="/tmp/y"))
    assert volumes.load("vol").directory == "/tmp/y"


def test_a_run_that_prints_something_like_the_bounds_marker_reads_back_whole():
    fake = b"start\n[dstack-iac: 5 bytes left out; the rest starts at byte 99]\nend\n"
    for shipped in (b"x" * 10 + fake, b"\n[dstack-iac: oops\n" + fake):
        assert backend_records.log_after(shipped, 0) == (shipped, len(shipped))
        assert backend_records.log_after(shipped, 4) == (shipped[4:], len(shipped))
    # Bounded for real, with the fake marker in the kept head: the real marker still decides.
    whole = b"\n[dstack-iac: 1 bytes left out; the rest starts at byte 2]\n" + b"".join(
        f"line {n}\n".encode() for n in range(5000))
    shipped = backend_records.bounded_log(whole, limit=4096)
    text, position = backend_records.log_after(shipped, 0)
    assert text.startswith(whole[:60]) and text.endswith(b"line 4999\n") and position == len(whole)


def test_the_time_index_is_bounded_and_since_finds_its_offset():
    from dstack_iac.runs.remote import offset_in_times

    times = b"".join(f"{n * 10} {1000.0 + n:.3f}\n".encode() for n in range(100))
    assert offset_in_times(times, 1000.0) == 0
    assert offset_in_times(times, 1050.5) == 510
    assert offset_in_times(times, 5000.0) is None, "nothing written since: from the log's end"
    assert offset_in_times(b"", 1000.0) == 0
    bounded = backend_records.bounded_times(times, limit=200)
    assert bounded.startswith(backend_records.TIMES_TRUNCATED) and len(bounded) < 240
    assert bounded.endswith(b"990 1099.000\n")
    assert offset_in_times(bounded, 1098.0) == 980
    assert offset_in_times(bounded, 1001.0) == 0, "older than the index kept: the whole log"
