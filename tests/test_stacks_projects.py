"""The standalone projects in stacks/, driven by the real `pulumi` CLI as a platform engineer
would (stack init, config set, preview/up/destroy), on a file backend in the test's state dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO, processes_mentioning

pytestmark = pytest.mark.e2e


@pytest.fixture
def pulumi_cli(state_dir):
    from dstack_iac.infra import engine

    cli = engine.require_pulumi()
    env = {**os.environ, **engine.engine_env(cli)}

    def run(project: Path, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([str(cli.path), *args, "--non-interactive"], cwd=project, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    return run


def project_copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(REPO / "stacks" / name, target)
    return target


def test_task_project_previews_the_nodes_of_a_dstack_yml(pulumi_cli, tmp_path, state_dir):
    project = project_copy("task", tmp_path)
    pulumi_cli(project, "stack", "init", "dev")
    pulumi_cli(project, "config", "set", "configuration", str(REPO / "examples" / "distributed" / "train.dstack.yml"))
    pulumi_cli(project, "config", "set", "publicKey", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIForPreview x")
    preview = pulumi_cli(project, "preview", "--json")
    steps = json.loads(preview.stdout)["steps"]
    created = sorted(step["urn"].rsplit("::", 1)[1] for step in steps if step["op"] == "create")
    # The distributed example has two nodes: the component and one local node per rank.
    assert created == ["dstack-iac-task-dev", "node-0", "node-1", "task"]
    assert not list(state_dir.glob("runs/*/nodes/*")), "a preview creates nothing"
    pulumi_cli(project, "stack", "rm", "dev", "--yes")


def test_volume_project_creates_and_destroys_a_volume(pulumi_cli, tmp_path, state_dir):
    project = project_copy("volume", tmp_path)
    pulumi_cli(project, "stack", "init", "dev")
    pulumi_cli(project, "config", "set", "configuration", str(REPO / "examples" / "volumes" / "volume.dstack.yml"))
    pulumi_cli(project, "up", "--yes")
    outputs = json.loads(pulumi_cli(project, "stack", "output", "--json").stdout)
    assert outputs["volume_id"] == "my-new-volume" and Path(outputs["directory"]).is_dir()
    assert outputs["directory"].startswith(str(state_dir))
    pulumi_cli(project, "destroy", "--yes")
    assert not Path(outputs["directory"]).exists()
    pulumi_cli(project, "stack", "rm", "dev", "--yes")
    assert processes_mentioning(str(state_dir)) == []
