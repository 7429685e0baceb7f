"""Run records in the Pulumi backend: what lets everyone sharing a `PULUMI_BACKEND_URL` see,
follow and stop each other's runs, and keeps run names unique among them.

Layout, under `<backend>/.dstack-iac/` (state/blobs.py):

    index/runs.json            every run's record, by name: claimed and changed by compare-and-swap
    alive/<name>.<generation>  the owner's heartbeat, rewritten every $DSTACK_IAC_HEARTBEAT_SECONDS
                               (30 s): its time, by the store's clock, says whether the owner lives
    logs/<name>.<generation>   the run's output, bounded (head and tail), shipped while it runs
    stops/<name>.<generation>  a stop asked from another machine; the owner's heartbeat reads it
    volumes/<name>.json        volume records
    fleets/<name>.json         fleet records (backends that have fleets publish them here)

A name is claimed by one compare-and-swap of the index that finds no active run of that name
and writes the new record with the next generation: of two users starting the same name,
exactly one wins. `ps` reads one object (the index) and lists one prefix (the heartbeats), so
it costs the same for 2 or 200 runs. This machine's own record (state/runs.py) stays what it
was; the backend's is published from it on every change that matters to others.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from dstack_iac.paths import backend_url
from dstack_iac.state.blobs import BlobStore, UnsupportedBackend, open_store
from dstack_iac.state.identity import host_id, host_name
from dstack_iac.state.processes import is_same_process, start_time
from dstack_iac.state.runs import RunNameTaken, RunRecord, RunStatus

INDEX_KEY = "index/runs.json"
HEARTBEAT_ENV = "DSTACK_IAC_HEARTBEAT_SECONDS"
DEFAULT_HEARTBEAT_SECONDS = 30.0
KEEP_FINISHED = 1000  # finished runs the index keeps (the newest)
LOG_LIMIT_BYTES = 2 * 1024 * 1024
# Changes only the owner's own machine needs: not worth a write of the shared index.
_LOCAL_ONLY_FIELDS = ("lease_renewed_at",)


def heartbeat_seconds() -> float:
    try:
        return max(0.2, float(os.environ.get(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_SECONDS)))
    except ValueError:
        return DEFAULT_HEARTBEAT_SECONDS


def stale_after() -> float:
    """A heartbeat older than this means the owner is gone (three missed beats and a margin)."""
    return 3 * heartbeat_seconds() + 10


def store() -> BlobStore:
    return open_store(backend_url())


def _shared_store() -> BlobStore | None:
    """The backend's store, or None when the backend keeps no records (gs://, azblob://, Pulumi
    Cloud): runs then work as on one machine, and their records stay in the state dir."""
    try:
        return store()
    except UnsupportedBackend:
        return None


def no_records_note() -> str | None:
    """What a user of a backend that keeps no records is told, once per command (else None)."""
    try:
        store()
    except UnsupportedBackend:
        where = backend_url().split("?", 1)[0]
        return (f"Run records stay on this machine: the backend {where} keeps none. Team features (`ps` of "
                "everyone's runs, `logs` and `stop` from another machine, run names unique across the backend) "
                "need an s3:// or file:// PULUMI_BACKEND_URL (docs/teams.md)")
    return None


# --- the index -----------------------------------------------------------------------------------

def _decode(data: bytes | None) -> dict[str, dict]:
    if not data:
        return {}
    try:
        index = json.loads(data)
    except ValueError:
        return {}
    runs = index.get("runs") if isinstance(index, dict) else None
    return runs if isinstance(runs, dict) else {}


def _encode(runs: Mapping[str, dict]) -> bytes:
    finished = sorted((name for name, data in runs.items() if not RunStatus(data.get("status", "done")).active),
                      key=lambda name: runs[name].get("created_at", 0), reverse=True)
    dropped = set(finished[KEEP_FINISHED:])
    kept = {name: data for name, data in sorted(runs.items()) if name not in dropped}
    return json.dumps({"version": 1, "runs": kept}, separators=(",", ":")).encode()


def _parse(data: dict) -> RunRecord | None:
    try:
        return RunRecord.model_validate(data)
    except ValueError:
        return None


def all_records() -> dict[str, RunRecord]:
    """Every run the backend knows, by name (one read)."""
    backend = _shared_store()
    if backend is None:
        return {}
    found = {}
    for name, data in _decode(backend.read(INDEX_KEY)).items():
        record = _parse(data)
        if record is not None:
            found[name] = record
    return found


def find(name: str) -> RunRecord | None:
    return all_records().get(name)


# --- liveness ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Heartbeats:
    ages: dict[tuple[str, int], float]  # (name, generation) -> seconds since the last beat

    def age(self, record: RunRecord) -> float | None:
        return self.ages.get((record.name, record.generation))


def heartbeats() -> Heartbeats:
    """The heartbeats of every live owner (one listing)."""
    backend = _shared_store()
    if backend is None:
        return Heartbeats({})
    items = backend.list("alive/")
    now = backend.now()
    ages = {}
    for item in items:
        name, _, generation = item.key[len("alive/"):].rpartition(".")
        if name and generation.isdigit():
            ages[(name, int(generation))] = max(0.0, now - item.modified)
    return Heartbeats(ages)


def on_this_host(record: RunRecord) -> bool:
    return bool(record.host_id) and record.host_id == host_id()


def owner_alive(record: RunRecord, beats: Heartbeats | None = None) -> bool:
    """Whether the run's owner lives: on this machine by its process (the run's lock when the
    run is this state dir's), elsewhere by its heartbeat."""
    from dstack_iac.state import runs

    if on_this_host(record):
        local = runs.load(record.name)
        if local is not None and local.generation == record.generation and local.run_dir == record.run_dir:
            return runs.owner_alive(record.name)
        return is_same_process(record.owner_pid, record.owner_started)
    age = (beats or heartbeats()).age(record)
    return age is not None and age <= stale_after()


def owner_text(record: RunRecord) -> str:
    return f"{record.owner or 'someone'} on {record.host or 'another machine'}"


# --- claiming and publishing ---------------------------------------------------------------------

_published: dict[tuple[str, int], dict] = {}
_publish_lock = threading.Lock()


def _fill_in(record: RunRecord) -> None:
    """What the backend's readers need and a record made before teams knew it lacks."""
    record.host = record.host or host_name()
    record.host_id = record.host_id or host_id()
    record.run_dir = record.run_dir or str(record.directory)
    if record.owner_started is None and record.owner_pid:
        record.owner_started = start_time(record.owner_pid)


def claim(record: RunRecord) -> None:
    """Own `record.name` in the backend (sets `record.generation`), or RunNameTaken saying whose
    it is. A finished run of the name makes way; one whose owner is gone blocks until stopped.
    A backend that keeps no records claims nothing: `record.generation` stays 0 (unpublished)."""
    _fill_in(record)
    backend = _shared_store()
    if backend is None:
        return
    beats = heartbeats()

    def change(data: bytes | None) -> bytes:
        runs = _decode(data)
        existing = _parse(runs[record.name]) if record.name in runs else None
        if existing is not None and existing.status.active:
            if owner_alive(existing, beats):
                raise RunNameTaken(f"a run named {record.name!r} is already active ({owner_text(existing)}): choose "
                                   f"another name, or stop it with `dstack-iac stop {record.name}`")
            raise RunNameTaken(f"a run named {record.name!r} ({owner_text(existing)}) was abandoned by its owner and "
                               f"may still hold resources: clean it up with `dstack-iac stop {record.name}`, or "
                               "choose another name")
        record.generation = (existing.generation if existing is not None else 0) + 1
        runs[record.name] = record.model_dump(mode="json")
        return _encode(runs)

    backend.update(INDEX_KEY, change)
    with _publish_lock:
        _published[(record.name, record.generation)] = _significant(record)


def _significant(record: RunRecord) -> dict:
    data = record.model_dump(mode="json")
    for key in _LOCAL_ONLY_FIELDS:
        data.pop(key, None)
    return data


def publish(record: RunRecord, *, force: bool = False) -> None:
    """The record's change, for everyone: written unless it changed only what others never read.
    Never overwrites a newer claim of the same name."""
    significant = _significant(record)
    key = (record.name, record.generation)
    with _publish_lock:
        if not force and _published.get(key) == significant:
            return

    def change(data: bytes | None) -> bytes | None:
        runs = _decode(data)
        current = runs.get(record.name)
        if current is not None and int(current.get("generation", 0)) > record.generation:
            return None  # the name was claimed again since: this record is history
        runs[record.name] = record.model_dump(mode="json")
        return _encode(runs)

    store().update(INDEX_KEY, change)
    with _publish_lock:
        _published[key] = significant


def forget(name: str, generation: int) -> None:
    """Remove a run from the index (e.g. a test's clean-up of a bucket)."""

    def change(data: bytes | None) -> bytes | None:
        runs = _decode(data)
        if name in runs and int(runs[name].get("generation", 0)) == generation:
            del runs[name]
            return _encode(runs)
        return None

    store().update(INDEX_KEY, change)


# --- heartbeats, stop requests, logs --------------------------------------------------------------

def _suffix(record: RunRecord) -> str:
    return f"{record.name}.{record.generation}"


def beat(record: RunRecord) -> None:
    store().write(f"alive/{_suffix(record)}", json.dumps({"pid": record.owner_pid, "at": time.time()}).encode())


def end_heartbeat(record: RunRecord) -> None:
    store().delete(f"alive/{_suffix(record)}")


def request_stop(record: RunRecord, by: str) -> None:
    store().write(f"stops/{_suffix(record)}", json.dumps({"by": by, "at": time.time()}).encode())


def stop_request(record: RunRecord) -> str | None:
    """Who asked the run to stop from elsewhere, if anyone."""
    data = store().read(f"stops/{_suffix(record)}")
    if data is None:
        return None
    try:
        return str(json.loads(data).get("by") or "someone")
    except (ValueError, AttributeError):
        return "someone"


def clear_stop_request(record: RunRecord) -> None:
    store().delete(f"stops/{_suffix(record)}")


MARKER_PREFIX = b"\n[dstack-iac: "


def bounded_log(data: bytes, limit: int = LOG_LIMIT_BYTES) -> bytes:
    """The log as the backend keeps it: whole up to `limit`, else its head and its tail, with a
    marker line saying where the tail starts in the whole log (so a reader far away can follow)."""
    if len(data) <= limit:
        return data
    head_size = limit // 4
    tail_start = len(data) - (limit - head_size)
    marker = MARKER_PREFIX + f"{tail_start - head_size} bytes left out; the rest starts at byte {tail_start}]\n".encode()
    return data[:head_size] + marker + data[tail_start:]


_MARKER = re.compile(rb"\n\[dstack-iac: (\d+) bytes left out; the rest starts at byte (\d+)\]\n")


def _find_marker(shipped: bytes) -> re.Match | None:
    """The bound's marker: the one whose numbers agree with where it stands (a line of the
    run's own output that looks like one does not, and is output like any other)."""
    for match in _MARKER.finditer(shipped):
        if int(match.group(2)) - int(match.group(1)) == match.start():
            return match
    return None


def log_after(shipped: bytes, position: int) -> tuple[bytes, int]:
    """What a reader that has the first `position` bytes of the whole log has not seen yet, and
    its new position; a gap the bound left out is said so."""
    found = _find_marker(shipped)
    if found is None:
        return shipped[position:], max(position, len(shipped))
    head, marker, tail = shipped[:found.start()], found.group(0), shipped[found.end():]
    tail_start = int(found.group(2))
    total = tail_start + len(tail)
    if position < len(head):
        return head[position:] + marker + tail, total
    if position < tail_start:
        return marker + tail, total
    return tail[position - tail_start:], max(position, total)


TIMES_LIMIT_BYTES = 256 * 1024
TIMES_TRUNCATED = b"# older entries left out\n"


def bounded_times(times: bytes, limit: int = TIMES_LIMIT_BYTES) -> bytes:
    """The log's time index (`offset epoch` lines, runs/log_index.py) as the backend keeps it:
    its newest whole lines up to `limit`, after a first line saying older ones were left out."""
    if len(times) <= limit:
        return times
    tail = times[len(times) - limit:]
    return TIMES_TRUNCATED + tail[tail.find(b"\n") + 1:]


def ship_log(record: RunRecord, data: bytes, times: bytes | None = None) -> None:
    store().write(f"logs/{_suffix(record)}", bounded_log(data))
    if times is not None:
        store().write(f"logs/{_suffix(record)}.times", bounded_times(times))


def read_log(record: RunRecord) -> bytes | None:
    return store().read(f"logs/{_suffix(record)}")


def read_log_times(record: RunRecord) -> bytes | None:
    return store().read(f"logs/{_suffix(record)}.times")


def delete_run_objects(record: RunRecord) -> None:
    for key in (f"alive/{_suffix(record)}", f"stops/{_suffix(record)}", f"logs/{_suffix(record)}",
                f"logs/{_suffix(record)}.times"):
        store().delete(key)


# --- other records (volumes, fleets) --------------------------------------------------------------

def publish_object(kind: str, name: str, data: dict) -> None:
    backend = _shared_store()
    if backend is not None:
        backend.write(f"{kind}/{name}.json", json.dumps(data, sort_keys=True).encode())


def forget_object(kind: str, name: str) -> None:
    backend = _shared_store()
    if backend is not None:
        backend.delete(f"{kind}/{name}.json")


def list_objects(kind: str) -> dict[str, dict]:
    backend = _shared_store()
    found: dict[str, dict] = {}
    if backend is None:
        return found
    for item in backend.list(f"{kind}/"):
        if not item.key.endswith(".json"):
            continue
        data = backend.read(item.key)
        try:
            found[item.key[len(kind) + 1:-len(".json")]] = json.loads(data or b"{}")
        except ValueError:
            continue
    return found
