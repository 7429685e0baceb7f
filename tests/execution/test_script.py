"""The node script, run for real with bash on this machine (no SSH needed for what it does)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dstack_iac.backends.local.interpreters import base_interpreter
from dstack_iac.execution.script import PIP_SHIM, node_environment, render_script
from tests.helpers import assert_valid_bash


def script_for(tmp_path: Path, commands: list[str], **options) -> str:
    environment = node_environment(
        run_name="r", rank=0, nodes_ips=["127.0.0.2"], gpus_per_node=0, working_dir=str(tmp_path / "work"),
        venv_dir=str(tmp_path / "venv"), user_env={"GREETING": "it's \"quoted\" $NOT_EXPANDED"},
    )
    (tmp_path / "work").mkdir(exist_ok=True)
    return render_script(environment=environment, commands=commands, python=base_interpreter(), **options)


def docker_arguments(tmp_path: Path, script: str) -> str:
    """Run a container script with a stand-in `docker` that prints each argument it was given
    as <arg>: the command line is then exactly what we meant."""
    (tmp_path / "task.sh").write_text(script)
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "docker").write_text("#!/bin/sh\nfor a in \"$@\"; do printf '<%s>\\n' \"$a\"; done\n")
    (fake / "docker").chmod(0o755)
    return subprocess.run(["bash", str(tmp_path / "task.sh")], capture_output=True, text=True,
                          env={"PATH": f"{fake}:/usr/bin:/bin"}).stdout


def run_script(tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    """Run a node script as the session does: its line saying the commands start is the
    session's (not shown), so it comes first, once, and is taken out of what the test reads."""
    from dstack_iac.execution.script import COMMANDS_STARTED

    path = tmp_path / "task.sh"
    path.write_text(script)
    result = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=300)
    lines = result.stdout.splitlines(keepends=True)
    if COMMANDS_STARTED + "\n" in lines:
        assert lines.count(COMMANDS_STARTED + "\n") == 1
        lines.remove(COMMANDS_STARTED + "\n")
    result.stdout = "".join(lines)
    return result


@pytest.mark.parametrize("options", [{}, {"wheelhouse": "/w h", "venv_seeds": "/s", "pip_cache_dir": "/p"}])
def test_rendered_scripts_are_valid_bash(tmp_path, options):
    script = script_for(tmp_path, ["echo one", "echo two"], **options)
    for text in (script, PIP_SHIM):
        assert_valid_bash(text, tmp_path)


def test_environment_values_reach_the_commands_verbatim(tmp_path):
    result = run_script(tmp_path, script_for(tmp_path, ['echo "$GREETING"', 'echo "$DSTACK_NODES_IPS"', "pwd"]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["it's \"quoted\" $NOT_EXPANDED", "127.0.0.2", str(tmp_path / "work")]


def test_first_failing_command_stops_the_script(tmp_path):
    result = run_script(tmp_path, script_for(tmp_path, ["echo before", "false", "echo after"]))
    assert (result.returncode, result.stdout) == (1, "before\n")


def test_venvs_are_made_from_a_seed_and_have_pip(tmp_path):
    seeds = tmp_path / "seeds"
    commands = ['python -c "import sys; print(sys.prefix)"', "pip --version"]
    result = run_script(tmp_path, script_for(tmp_path, commands, venv_seeds=str(seeds), wheelhouse=str(tmp_path / "w")))
    assert result.returncode == 0, result.stderr
    prefix, pip_line = result.stdout.splitlines()
    assert prefix == str(tmp_path / "venv") and f"from {tmp_path / 'venv'}/lib/" in pip_line
    [seed] = [p for p in seeds.iterdir() if p.is_dir()]
    assert list(seed.glob("lib/python*/site-packages/pip"))
    # The run's own venv was made without pip: no ensurepip-installed entry points of its own.
    assert not (tmp_path / "venv" / "bin" / "pip").exists()


def test_an_unusable_seeds_dir_falls_back_to_a_plain_venv(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = run_script(tmp_path, script_for(tmp_path, ["pip --version"], venv_seeds=str(blocker / "seeds")))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "venv" / "bin" / "pip").exists()


def test_cloud_tasks_with_an_image_run_in_the_container(tmp_path):
    from dstack_iac.execution.script import render_container_script

    environment = node_environment(run_name="r", rank=1, nodes_ips=["10.0.0.1", "10.0.0.2"], gpus_per_node=8,
                                   working_dir="/opt/dstack-iac/run/workdir", venv_dir="/opt/v",
                                   user_env={"TOKEN": "a b'c"})
    script = render_container_script(environment=environment, commands=["nvidia-smi", "torchrun train.py"],
                                     image="nvcr.io/nvidia/pytorch:24.01-py3", gpus=True, volume_paths=["/data"])
    assert_valid_bash(script, tmp_path)
    assert "exec docker run --rm --init --network host --ipc host" in script and "--gpus all" in script
    assert "-e TOKEN" in script and "-e DSTACK_NODES_IPS" in script and "DSTACK_VENV_DIR" not in script
    assert "export DSTACK_WORKING_DIR=/workflow" in script and "-v /data:/data" in script
    out = docker_arguments(tmp_path, script)
    assert "<nvcr.io/nvidia/pytorch:24.01-py3>\n<bash>\n<-c>\n<set -e\nnvidia-smi\ntorchrun train.py>" in out
    assert f"<{tmp_path}/workdir:/workflow>" in out


def test_working_dir_is_inside_the_upload_unless_absolute(tmp_path):
    from dstack_iac.execution.script import resolve_working_dir

    assert resolve_working_dir("/n/workflow", None) == "/n/workflow"
    assert resolve_working_dir("/n/workflow", "src/app") == "/n/workflow/src/app"
    assert resolve_working_dir("/n/workflow", "/workflow/src") == "/n/workflow/src"
    assert resolve_working_dir("/n/workflow", "/workflow") == "/n/workflow"
    assert resolve_working_dir("/n/workflow", "/opt/app") == "/opt/app"
    (tmp_path / "work" / "sub").mkdir(parents=True)
    result = run_script(tmp_path, script_for(tmp_path, ["pwd", 'echo "$DSTACK_WORKING_DIR"'], working_dir="sub"))
    assert result.stdout.splitlines() == [str(tmp_path / "work" / "sub")] * 2


def test_an_entrypoint_takes_the_commands_as_its_arguments(tmp_path):
    script = script_for(tmp_path, ["first arg", "$NOT_EXPANDED"], entrypoint="printf '<%s>\\n'")
    assert_valid_bash(script, tmp_path)
    result = run_script(tmp_path, script)
    assert result.stdout == "<first arg>\n<$NOT_EXPANDED>\n", result.stderr


def test_a_container_gets_the_entrypoint_shm_size_and_working_dir(tmp_path):
    from dstack_iac.execution.script import render_container_script

    environment = node_environment(run_name="r", rank=0, nodes_ips=["10.0.0.1"], gpus_per_node=0,
                                   working_dir="/opt/dstack-iac/run/workdir", venv_dir="/opt/v", user_env={})
    script = render_container_script(environment=environment, commands=["--port", "80"], image="img:1", gpus=False,
                                     entrypoint="python -m server", shm_gb=16, working_dir="src")
    assert_valid_bash(script, tmp_path)
    out = docker_arguments(tmp_path, script)
    assert "<--shm-size>\n<16384m>" in out and "<-w>\n</workflow/src>" in out
    assert out.endswith("<--entrypoint>\n<python>\n<img:1>\n<-m>\n<server>\n<--port>\n<80>\n")


def test_docker_privileged_and_user_shape_the_container(tmp_path):
    """`docker: true` runs dstack's Docker-in-Docker image privileged and starts its daemon first;
    `user` runs the commands as that user."""
    from dstack_iac.execution.script import render_container_script

    environment = node_environment(run_name="r", rank=0, nodes_ips=["10.0.0.1"], gpus_per_node=0,
                                   working_dir="/opt/dstack-iac/run/workdir", venv_dir="/opt/v", user_env={})
    script = render_container_script(environment=environment, commands=["docker compose up"], image="dstackai/dind",
                                     gpus=False, privileged=True, user="1000:1000", start_dockerd=True)
    assert_valid_bash(script, tmp_path)
    out = docker_arguments(tmp_path, script)
    assert "<--privileged>" in out and "<--user>\n<1000:1000>" in out
    assert "<dstackai/dind>\n<bash>\n<-c>\n<set -e\nstart-dockerd\n" in out and out.rstrip().endswith("docker compose up>")
    plain = docker_arguments(tmp_path, render_container_script(environment=environment, commands=["true"],
                                                               image="ubuntu", gpus=False))
    assert "<--privileged>" not in plain and "<--user>" not in plain and "start-dockerd" not in plain
