"""Run records in the Pulumi backend (state/blobs.py, state/backend_records.py), on a real file
system and a real S3 API (moto's server): claims are atomic, records are published and read
back, heartbeats and the bounded log work as `ps`, `logs` and `stop` need them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from dstack_iac.state import backend_records
from dstack_iac.state.blobs import FileStore, S3Store, open_store
from dstack_iac.state.runs import RunNameTaken, RunRecord, RunStatus
from tests.helpers import REPO
from tests.s3 import moto_server, s3_backend  # noqa: F401 - fixtures

CLAIMANTS = 6
CLAIM_SCRIPT = """
import os, sys, time
from dstack_iac.state import backend_records
from dstack_iac.state.runs import RunNameTaken, RunRecord, RunStatus
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
record = RunRecord(name="contested", status=RunStatus.PROVISIONING, backend="local", nodes=1, configuration="x",
                   owner_pid=os.getpid(), owner=sys.argv[1], created_at=time.time())
try:
    backend_records.claim(record)
except RunNameTaken as exc:
    print("lost", exc.message)
else:
    print("won", record.generation)
    time.sleep(3)  # the owner lives while the others try
"""


def record(name: str = "r", **changes) -> RunRecord:
    fields = dict(name=name, status=RunStatus.RUNNING, backend="local", nodes=1, configuration="t.dstack.yml",
                  owner_pid=0, owner="alice", created_at=time.time())
    return RunRecord(**{**fields, **changes})


def claim_concurrently(env: dict) -> list[str]:
    """CLAIMANTS processes claim one name at the same instant: what each said."""
    start = str(time.time() + 3)
    processes = [subprocess.Popen([sys.executable, "-c", CLAIM_SCRIPT, f"user-{n}", start], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for n in range(CLAIMANTS)]
    outputs = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outputs.append(out.strip())
    return outputs


def test_concurrent_claims_of_one_name_on_s3_exactly_one_wins(s3_backend):
    import os

    outputs = claim_concurrently({**os.environ})
    winners = [line for line in outputs if line.startswith("won")]
    assert len(winners) == 1, outputs
    assert winners == ["won 1"]
    winner = next(n for n, line in enumerate(outputs) if line.startswith("won"))
    assert all(f"already active (user-{winner} on" in line for line in outputs if line.startswith("lost")), outputs
    index = backend_records.all_records()
    assert list(index) == ["contested"] and index["contested"].generation == 1


def test_concurrent_claims_on_a_file_backend_exactly_one_wins(state_dir, tmp_path):
    import os

    env = {**os.environ, "PULUMI_BACKEND_URL": (tmp_path / "shared-backend").as_uri()}
    outputs = claim_concurrently(env)
    assert sum(line.startswith("won") for line in outputs) == 1, outputs


def test_a_finished_run_makes_way_and_history_never_overwrites_the_new_claim(s3_backend):
    first = record("again", status=RunStatus.PROVISIONING)
    backend_records.claim(first)
    second = record("again", status=RunStatus.PROVISIONING, owner="bob")
    with pytest.raises(RunNameTaken, match="alice on"):
        backend_records.claim(second)  # alice's run is active and (on this host) her pid 0 is not alive
    backend_records.publish(first.model_copy(update={"status": RunStatus.DONE, "exit_code": 0}))
    backend_records.claim(second)
    assert second.generation == 2
    # alice's late update of her old run does not undo bob's claim.
    backend_records.publish(first.model_copy(update={"status": RunStatus.STOPPED}), force=True)
    assert backend_records.find("again").owner == "bob"


def test_heartbeats_are_timed_by_the_store_and_stop_requests_reach_the_owner(s3_backend, monkeypatch):
    monkeypatch.setenv("DSTACK_IAC_HOST_ID", "another-machine")
    run = record("beating", owner_pid=123456, host_id="laptop/1", host="laptop")
    backend_records.claim(run)
    assert not backend_records.owner_alive(run), "no heartbeat yet: another machine's owner is not known to live"
    backend_records.beat(run)
    beats = backend_records.heartbeats()
    assert beats.age(run) is not None and beats.age(run) < 5
    assert backend_records.owner_alive(run, beats)
    assert backend_records.stop_request(run) is None
    backend_records.request_stop(run, by="bob on desk")
    assert backend_records.stop_request(run) == "bob on desk"
    backend_records.end_heartbeat(run)
    assert not backend_records.owner_alive(run)


def test_the_log_is_bounded_and_a_far_reader_follows_it_across_the_gap():
    whole = b"".join(f"line {n}\n".encode() for n in range(20000))
    shipped = backend_records.bounded_log(whole, limit=4096)
    assert len(shipped) < 4096 + 100
    assert shipped.startswith(b"line 0\n") and shipped.endswith(b"line 19999\n")
    assert b"bytes left out" in shipped
    text, position = backend_records.log_after(shipped, 0)
    assert text.startswith(b"line 0\n") and b"bytes left out" in text and position == len(whole)
    more = whole + b"line 20000\n"
    text, position = backend_records.log_after(backend_records.bounded_log(more, limit=4096), position)
    assert text == b"line 20000\n" and position == len(more)
    small = b"a\nb\n"
    assert backend_records.bounded_log(small) == small
    assert backend_records.log_after(small, 2) == (b"b\n", 4)


def test_file_store_create_update_and_list(tmp_path):
    store = FileStore(tmp_path / "root", (tmp_path / "root").as_uri())
    assert store.create("a/b", b"1") and not store.create("a/b", b"2")
    assert store.read("a/b") == b"1" and store.read("a/missing") is None
    store.update("a/c", lambda current: (current or b"") + b"x")
    store.update("a/c", lambda current: (current or b"") + b"y")
    assert store.read("a/c") == b"xy"
    assert [item.key for item in store.list("a/")] == ["a/b", "a/c"]
    store.delete("a/b")
    assert [item.key for item in store.list("")] == ["a/c"]


def test_s3_url_is_read_as_the_engine_reads_it():
    store = S3Store("s3://bucket/team/prefix?endpoint=minio:9000&disableSSL=true&s3ForcePathStyle=true&region=eu-west-1")
    assert (store.scheme, store.endpoint_host, store.path_style, store.region) == ("http", "minio:9000", True, "eu-west-1")
    assert store.prefix == "team/prefix/.dstack-iac"
    aws = S3Store("s3://bucket?region=us-west-2")
    assert (aws.scheme, aws.host) == ("https", "bucket.s3.us-west-2.amazonaws.com")
    explicit = S3Store("s3://b?endpoint=https://s3.example.com&use_path_style=true")
    assert (explicit.scheme, explicit.endpoint_host, explicit.path_style) == ("https", "s3.example.com", True)


def test_a_backend_without_a_record_store_is_refused_with_a_pointer():
    from dstack_iac.errors import EnvironmentProblem

    with pytest.raises(EnvironmentProblem, match="file:// and s3://"):
        open_store("gs://bucket")


def test_volume_records_are_shared(s3_backend):
    from dstack_iac.state import volumes
    from dstack_iac.state.volumes import VolumeRecord

    volumes.save(VolumeRecord(name="data", backend="aws", region="us-east-1", volume_id="vol-1"))
    [(shared, owner, host)] = volumes.shared_volumes()
    assert shared.volume_id == "vol-1" and owner and host
    volumes.forget("data")
    assert volumes.shared_volumes() == []
