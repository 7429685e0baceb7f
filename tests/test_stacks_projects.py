"""The standalone projects in stacks/, driven by the real `pulumi` CLI as a platform engineer
would (stack init, config set, preview/up/destroy), on a file backend in the test's state dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO, dstack, processes_mentioning

pytestmark = pytest.mark.e2e


@pytest.fixture
def pulumi_cli(state_dir):
    from dstack_iac.infra import engine

    cli = engine.require_pulumi()
    env = {**os.environ, **engine.engine_env(cli)}

    def run(project: Path, *args: str, expect_failure: bool = False) -> subprocess.CompletedProcess:
        result = subprocess.run([str(cli.path), *args, "--non-interactive"], cwd=project, env=env,
                                capture_output=True, text=True, timeout=300)
        assert (result.returncode != 0) is expect_failure, result.stdout + result.stderr
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
    # The distributed example has two nodes: the component, one local node per rank, and the offer.
    assert created == ["dstack-iac-task-dev", "node-0", "node-1", "task", "task-offer"]
    assert not list(state_dir.glob("runs/*/nodes/*")), "a preview creates nothing"

    # The same policy packs as `dstack-iac run --policy-pack`, through Pulumi's own flag.
    limits = tmp_path / "limits.json"
    limits.write_text(json.dumps({"max-nodes-per-run": {"maxNodes": 1}}))
    refused = pulumi_cli(project, "preview", "--policy-pack", str(REPO / "policies" / "dstack-iac-guardrails"),
                         "--policy-pack-config", str(limits), expect_failure=True)
    assert "max-nodes-per-run" in refused.stdout
    assert "the run asks for 2 nodes (local), over the limit of 1 per run" in refused.stdout

    # The same reviewed plans as `dstack-iac run --plan`: the program refuses a plan that differs.
    example = REPO / "examples" / "distributed"
    plan = tmp_path / "plan.json"
    saved = dstack(state_dir, "preview", str(example), "-f", str(example / "train.dstack.yml"), "--save-plan", str(plan))
    assert saved.returncode == 0, saved.stderr
    pulumi_cli(project, "config", "set", "plan", str(plan))
    pulumi_cli(project, "preview")
    tampered = json.loads(plan.read_text())
    tampered["offer"]["price"] = 0.5
    plan.write_text(json.dumps(tampered))
    differs = pulumi_cli(project, "preview", expect_failure=True)
    assert f"the run differs from the reviewed plan {plan}" in differs.stdout
    assert "offer price: 0.5 (reviewed) -> 0.0" in differs.stdout
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
