"""The cloud side of `--build` with the nodes and the storage stack stood in for: a kept
archive is restored into every node's build cache through the sessions' public methods before
the commands, and a new one is fetched from node 0 and stored after. Local runs need no hook
(their nodes' machine keeps the cache)."""

from __future__ import annotations

from types import SimpleNamespace

from dstack_iac.backends.local.backend import LocalBackend
from dstack_iac.config.models import TaskConfiguration
from dstack_iac.execution.group import NodeGroup
from dstack_iac.model.nodes import NodeEndpoint
from dstack_iac.model.offers import Offer
from dstack_iac.model.plan import NodeRuntime, RunPlan
from dstack_iac.runs import build_cache
from dstack_iac.runs.build_cache import BuildStorage, StorageRecord, StoredBuild, StoredBuildHook, build_hooks
from dstack_iac.paths import ensure_private_dir, write_private

OFFER = Offer(backend="aws", region="eu-west-1", instance_type="t3.small", cpus=2, memory_gb=2, disk_gb=10, price=0.02)


def _plan(tmp_path, **update) -> RunPlan:
    configuration = TaskConfiguration.model_validate({"type": "task", "commands": ["python app.py"],
                                                      "build": ["pip install -r requirements.txt"]})
    plan = RunPlan(run_name="r", configuration=configuration, configuration_path=".dstack.yml", repo_dir=tmp_path,
                   backend="aws", offer=OFFER, nodes=2, python="python3", build=True)
    return plan.model_copy(update=update)


class FakeSession:
    def __init__(self, rank: int):
        self.endpoint = NodeEndpoint(rank=rank, address=f"10.0.0.{rank}", private_address=f"10.0.0.{rank}", port=22,
                                     user="ubuntu", host_key="", working_dir="/n/workflow")
        self.commands: list[str] = []
        self.files: dict[str, bytes] = {}

    def command_output(self, command: str) -> str:
        self.commands.append(command)
        return ""

    def put_private(self, data: bytes, remote: str, mode: int = 0o600) -> None:
        self.files[remote] = data


class CloudBackend:
    name = "aws"

    def node_runtime(self, plan, endpoint):
        return NodeRuntime(build_cache="/opt/dstack/builds")

    def build_storage_region(self, plan):
        return plan.offer.region


def _run(tmp_path, plan):
    said: list[str] = []
    group = NodeGroup([FakeSession(0), FakeSession(1)])
    run = SimpleNamespace(plan=plan, backend=CloudBackend(), group=group, progress=None,
                          ui=SimpleNamespace(say=said.append, warn=said.append))
    return run, said


def test_local_runs_keep_builds_on_their_machine_and_need_no_storage_hook(tmp_path):
    assert build_hooks(_plan(tmp_path, backend="local"), LocalBackend()) == []
    assert build_hooks(_plan(tmp_path, build=False), CloudBackend()) == []
    [hook] = build_hooks(_plan(tmp_path), CloudBackend())
    assert isinstance(hook, StoredBuildHook) and hook.storage.stack_name == "storage-aws-eu-west-1"


def test_a_kept_archive_is_restored_on_every_node_and_not_stored_again(tmp_path, monkeypatch):
    storage = BuildStorage(CloudBackend(), "eu-west-1")
    ensure_private_dir(storage.directory)
    write_private(storage.archive_path("k1"), b"archive-bytes")
    record = StorageRecord(stack=storage.stack_name, backend="aws", region="eu-west-1",
                           builds={"k1": StoredBuild(fingerprint="3.11.7 x86_64", size=13, stored_at=0)})
    write_private(storage.record_path, record.model_dump_json())
    run, said = _run(tmp_path, _plan(tmp_path))
    hook = StoredBuildHook(storage, "k1")
    hook.nodes_ready(run)
    for session in run.group.sessions:
        assert session.commands == ["mkdir -p /opt/dstack/builds"]
        assert session.files == {"/opt/dstack/builds/k1.tar.gz": b"archive-bytes",
                                 "/opt/dstack/builds/k1.tar.gz.fingerprint": b"3.11.7 x86_64\n"}
    assert "Restoring the pre-built environment k1 from storage-aws-eu-west-1" in said[0]
    monkeypatch.setattr(build_cache, "fetch_file", lambda *a: (_ for _ in ()).throw(AssertionError("fetched")))
    with hook.executing(run):
        pass

    # --force-build: nothing is restored, the node builds.
    forced, _ = _run(tmp_path, _plan(tmp_path, force_build=True))
    StoredBuildHook(storage, "k1").nodes_ready(forced)
    assert all(session.files == {} for session in forced.group.sessions)


def test_a_new_build_is_fetched_from_node_0_and_stored(tmp_path, monkeypatch):
    storage = BuildStorage(CloudBackend(), "eu-west-1")
    node_files = {"/opt/dstack/builds/k2.tar.gz.fingerprint": b"3.11.7 x86_64\n",
                  "/opt/dstack/builds/k2.tar.gz": b"new-archive"}
    fetched = []
    monkeypatch.setattr(build_cache, "fetch_file",
                        lambda session, remote: fetched.append((session.endpoint.rank, remote)) or node_files.get(remote))
    stored = []
    monkeypatch.setattr(BuildStorage, "store", lambda self, key, archive, fingerprint, on_event=None: stored.append(
        (key, archive, fingerprint)) or StorageRecord(stack=self.stack_name, backend="aws", region="eu-west-1",
                                                      bucket="dstack-iac-builds-1"))
    run, said = _run(tmp_path, _plan(tmp_path))
    hook = StoredBuildHook(storage, "k2")
    hook.nodes_ready(run)  # nothing kept yet
    assert all(session.files == {} for session in run.group.sessions)
    with hook.executing(run):
        pass
    assert {rank for rank, _ in fetched} == {0}
    assert stored == [("k2", b"new-archive", "3.11.7 x86_64")]
    assert "bucket dstack-iac-builds-1" in said[-1]
