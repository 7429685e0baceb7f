"""Volumes on the local backend, end to end through the CLI: long-lived stacks, private mounts,
data that persists across runs, deletion refused while in use."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.helpers import REPO, assert_nothing_left, dstack, read_until, spawn, stack_files, write_task

pytestmark = pytest.mark.e2e
EXAMPLE = REPO / "examples" / "volumes"


@pytest.fixture
def seeds_mount_point():
    """The seeds' example mounts at /volume_data: the run may create it empty, nothing more."""
    path = Path("/volume_data")
    existed = path.exists()
    yield path
    if not existed and path.is_dir() and not any(path.iterdir()):
        path.rmdir()


def write_volume(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.dstack.yml"
    path.write_text(f"type: volume\nname: {name}\nbackend: local\n")
    return path


def test_seeds_volume_example_persists_data_across_runs(e2e_home, seeds_mount_point):
    created = dstack(e2e_home, "volume", "create", "-f", str(EXAMPLE / "volume.dstack.yml"))
    assert created.returncode == 0, created.stderr
    [listed] = json.loads(dstack(e2e_home, "volume", "list", "--json").stdout)
    assert (listed["name"], listed["backend"], listed["used_by"]) == ("my-new-volume", "local", [])
    for expected in (1, 2):
        result = dstack(e2e_home, "run", str(EXAMPLE), "-f", str(EXAMPLE / "train.dstack.yml"), "-y")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"runs so far: {expected}" in result.stdout
    # The data lives in the volume; the host path holds nothing.
    assert len((Path(listed["directory"]) / "history.txt").read_text().splitlines()) == 2
    assert not seeds_mount_point.exists() or list(seeds_mount_point.iterdir()) == []
    assert [p.name for p in stack_files(e2e_home)] == ["volume-my-new-volume.json"]  # it outlives the runs
    deleted = dstack(e2e_home, "volume", "delete", "my-new-volume", "-y")
    assert deleted.returncode == 0, deleted.stderr
    assert not Path(listed["directory"]).exists()
    assert json.loads(dstack(e2e_home, "volume", "list", "--json").stdout) == []
    assert_nothing_left(e2e_home)


def test_deleting_a_volume_in_use_is_refused(e2e_home, tmp_path):
    assert dstack(e2e_home, "volume", "create", "-f", str(write_volume(tmp_path, "busy-vol"))).returncode == 0
    write_task(tmp_path, f"name: user\nvolumes: ['busy-vol:{tmp_path}/mnt']\ncommands:\n  - echo started\n  - sleep 600\n")
    process = spawn(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    try:
        read_until(process, "started")
        refused = dstack(e2e_home, "volume", "delete", "busy-vol", "-y")
        assert refused.returncode == 6 and "in use by user" in refused.stderr
        assert json.loads(dstack(e2e_home, "volume", "list", "--json").stdout)[0]["used_by"] == ["user"]
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    assert dstack(e2e_home, "volume", "delete", "busy-vol", "-y").returncode == 0
    assert_nothing_left(e2e_home)


def test_two_runs_mount_different_volumes_at_the_same_path(e2e_home, tmp_path):
    mount = tmp_path / "shared-path"
    processes = []
    for name in ("vol-a", "vol-b"):
        assert dstack(e2e_home, "volume", "create", "-f", str(write_volume(tmp_path, name))).returncode == 0
        directory = tmp_path / name
        write_task(directory, f"name: run-{name}\nvolumes: ['{name}:{mount}']\ncommands:\n"
                              f"  - echo {name} > {mount}/owner.txt\n  - sleep 3\n  - 'echo seen: $(cat {mount}/*)'\n")
        processes.append(spawn(e2e_home, "run", str(directory), "-f", str(directory / "t.dstack.yml"), "-y"))
    outputs = [p.communicate(timeout=180)[0] for p in processes]
    for name, process, out in zip(("vol-a", "vol-b"), processes, outputs):
        assert process.returncode == 0, out
        assert f"seen: {name}\n" in out
    assert list(mount.iterdir()) == []  # nothing was written at the path on the host itself
    for name in ("vol-a", "vol-b"):
        assert dstack(e2e_home, "volume", "delete", name, "-y").returncode == 0
    assert_nothing_left(e2e_home)


def test_a_missing_volume_fails_before_anything_is_provisioned(e2e_home, tmp_path):
    write_task(tmp_path, "volumes:\n  - name: [nope-0, nope-1]\n    path: /data\ncommands: [echo]\n")
    result = dstack(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    assert result.returncode == 2
    assert "no volume 'nope-0' or 'nope-1' on the local backend" in result.stderr
    assert "nothing was provisioned" in result.stderr and stack_files(e2e_home) == []


def test_invalid_volume_configurations_name_file_line_and_field(e2e_home, tmp_path):
    path = tmp_path / "v.dstack.yml"
    path.write_text("type: volume\nname: data\nbackend: gcp\nregion: us-central1\nsize: lots\n")
    result = dstack(e2e_home, "volume", "create", "-f", str(path))
    assert result.returncode == 2
    assert "v.dstack.yml:5" in result.stderr and "size" in result.stderr
    path.write_text("type: volume\nname: data\nbackend: aws\nsize: 100GB\n")
    result = dstack(e2e_home, "volume", "create", "-f", str(path))
    assert result.returncode == 2 and "region" in result.stderr and "is required for the aws backend" in result.stderr
    assert stack_files(e2e_home) == []
