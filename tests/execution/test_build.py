"""The build cache's key and the node script's build section (rendering only; the end-to-end
test runs them on real nodes)."""

from __future__ import annotations

import subprocess

from dstack_iac.config.models import TaskConfiguration
from dstack_iac.execution.build import build_commands, build_key, build_section, named_files
from dstack_iac.model.offers import Offer
from dstack_iac.model.plan import NodeRuntime, RunPlan
from tests.helpers import assert_valid_bash

OFFER = Offer(backend="local", region="local", instance_type="vm", cpus=2, memory_gb=4, disk_gb=10, price=0)


def _plan(tmp_path, build=("pip install -r requirements.txt",), **extra) -> RunPlan:
    configuration = TaskConfiguration.model_validate({"type": "task", "commands": ["python app.py"],
                                                      "build": list(build), **extra})
    return RunPlan(run_name="r", configuration=configuration, configuration_path=".dstack.yml", repo_dir=tmp_path,
                   backend="local", offer=OFFER, nodes=1, python="/usr/bin/python3.11", build=True)


def test_files_the_build_names_are_part_of_the_key(tmp_path):
    (tmp_path / "requirements.txt").write_text("six==1.16.0\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "extra.txt").write_text("idna\n")
    files = named_files(["pip install -r requirements.txt --constraint=sub/extra.txt", "echo not-a-file"], tmp_path,
                        None)
    assert list(files) == ["requirements.txt", "sub/extra.txt"]
    first = build_key(_plan(tmp_path))
    assert build_key(_plan(tmp_path)) == first
    (tmp_path / "requirements.txt").write_text("six==1.17.0\n")
    assert build_key(_plan(tmp_path)) != first


def test_commands_python_and_platform_are_part_of_the_key(tmp_path):
    base = _plan(tmp_path)
    assert build_key(_plan(tmp_path, build=["pip install six"])) != build_key(base)
    assert build_key(base.model_copy(update={"python": "/usr/bin/python3.12"})) != build_key(base)
    arm = base.model_copy(update={"offer": OFFER.model_copy(update={"cpu_arch": "arm"})})
    assert build_key(arm) != build_key(base)


def test_files_outside_the_working_directory_are_not_read(tmp_path):
    (tmp_path / "outside.txt").write_text("x")
    inner = tmp_path / "repo"
    inner.mkdir()
    assert named_files(["cat ../outside.txt /etc/passwd"], inner, None) == {}


def test_without_build_nothing_runs_and_without_a_cache_the_commands_run_as_they_are(tmp_path):
    plan = _plan(tmp_path)
    cache = NodeRuntime(build_cache="/cache/builds")
    assert build_commands(plan.model_copy(update={"build": False}), cache) == []
    assert build_commands(plan, NodeRuntime()) == ["pip install -r requirements.txt"]
    [section] = build_commands(plan, cache)
    assert "pip install -r requirements.txt" in section and "/cache/builds" in section


def test_the_section_is_valid_bash_and_posix_sh(tmp_path):
    section = build_section("abc123", "/cache dir/builds", ["pip install -r requirements.txt", "echo 'done'"], False)
    script = "set -e\n" + section + "\n"
    assert_valid_bash(script, tmp_path)
    (tmp_path / "check.sh").write_text(script)
    assert subprocess.run(["sh", "-n", str(tmp_path / "check.sh")]).returncode == 0
    forced = build_section("abc123", "/c", ["true"], True)
    assert "if [ 1 = 0 ]" in forced and "(--force-build)" in forced


def test_the_node_script_runs_the_build_only_with_build_and_after_the_venv_in_the_working_dir(tmp_path, monkeypatch):
    from dstack_iac.execution.script import node_script
    from dstack_iac.model.nodes import NodeEndpoint
    from pydantic import SecretStr

    monkeypatch.setenv("EXTRA", "six")
    plan = _plan(tmp_path, build=["pip install -r requirements.txt ${{ env.EXTRA }}"], env=["EXTRA"])
    plan = plan.model_copy(update={"env_references": {"EXTRA": SecretStr("six")}})
    endpoint = NodeEndpoint(rank=0, address="127.0.0.2", private_address="127.0.0.2", port=22, user="u",
                            host_key="", working_dir="/n/workflow")
    runtime = NodeRuntime(build_cache="/cache/builds")
    without = node_script(plan.model_copy(update={"build": False}), endpoint, runtime, ["127.0.0.2"], 0)
    assert "pip install" not in without and "/cache/builds" not in without
    script = node_script(plan, endpoint, runtime, ["127.0.0.2"], 0)
    assert_valid_bash(script, tmp_path)
    assert script.index('source "$DSTACK_VENV_DIR/bin/activate"') < script.index('cd "$DSTACK_WORKING_DIR"') \
        < script.index("__dstack_build_cache=") < script.index("python app.py")
    # A reference in a build command is data for the shell, as in the commands.
    assert 'pip install -r requirements.txt "${__dstack_env_EXTRA}"' in script
    assert "__dstack_env_EXTRA=six" in script
