"""End to end on the local backend, through the CLI as a user runs it: a real Pulumi engine,
real sshd nodes on loopback addresses, Fabric, and teardown checked on disk and in /proc."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import (REPO, assert_nothing_left, describe, dstack, processes_mentioning, read_until, spawn,
                           stack_files, write_task)

pytestmark = pytest.mark.e2e
HELLO = REPO / "examples" / "hello"


def test_hello_succeeds_and_prints_its_env(e2e_home):
    result = dstack(e2e_home, "run", str(HELLO), "-y")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Hello from node 0 of 1 (hello)" in out
    for variable in ("DSTACK_RUN_NAME=hello", "DSTACK_NODE_RANK=0", "DSTACK_NODES_NUM=1", "DSTACK_GPUS_PER_NODE=0",
                     "DSTACK_GPUS_NUM=0", "DSTACK_MASTER_NODE_IP=127.", "DSTACK_WORKING_DIR=", "DSTACK_VENV_DIR="):
        assert variable in out
    assert "This file was uploaded with the working directory." in out
    assert "RUN    CONFIGURATION" in out and "local" in out
    assert "Torn down" in result.stderr
    assert_nothing_left(e2e_home)
    # The run is recorded, and its log kept for `logs`.
    ps = json.loads(dstack(e2e_home, "ps", "--all", "--json").stdout)
    assert [(r["name"], r["status"], r["exit_code"]) for r in ps] == [("hello", "done", 0)]
    assert "Hello from node 0 of 1" in dstack(e2e_home, "logs", "hello").stdout


def test_failing_command_stops_the_script_and_propagates_its_exit_code(e2e_home, tmp_path):
    write_task(tmp_path, "commands:\n  - echo before\n  - (exit 7)\n  - echo never-printed\n")
    result = dstack(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    assert result.returncode == 7
    assert "before" in result.stdout and "never-printed" not in result.stdout
    assert "failed with exit code 7" in result.stderr
    assert_nothing_left(e2e_home)


def test_run_args_env_and_ignored_files(e2e_home, tmp_path):
    (tmp_path / ".gitignore").write_text("*.ckpt\nbuild/\n")
    (tmp_path / ".dstackignore").write_text("secret.txt\n")
    (tmp_path / "model.ckpt").write_text("x")
    (tmp_path / "secret.txt").write_text("x")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "out.bin").write_text("x")
    (tmp_path / "keep.txt").write_text("kept")
    write_task(tmp_path, "commands:\n  - echo args=${{ run.args }}\n  - echo greeting=$GREETING\n  - ls -A | sort | tr '\\n' ' '\n"
                         "  - which python | grep -q \"$DSTACK_VENV_DIR\" && echo venv-active\n"
                         "env:\n  - GREETING\n")
    result = dstack(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y",
                    "--epochs=3", "a b", env={"GREETING": "hi there"})
    assert result.returncode == 0, result.stderr
    assert "args=--epochs=3 a b" in result.stdout
    assert "greeting=hi there" in result.stdout
    assert ".dstackignore .gitignore keep.txt t.dstack.yml" in result.stdout
    assert "venv-active" in result.stdout


def test_ctrl_c_tears_everything_down(e2e_home, tmp_path):
    write_task(tmp_path, "commands:\n  - echo started\n  - sleep 600\n")
    process = spawn(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    lines = read_until(process, "started")
    assert processes_mentioning(str(e2e_home / "runs")), "the node is running"
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=60)[0]
    took = time.monotonic() - sent
    assert process.returncode == 130, "".join(lines) + rest
    assert "Interrupted" in rest and "Torn down" in rest
    assert took < 30, f"teardown took {took:.1f}s"
    assert_nothing_left(e2e_home)
    ps = json.loads(dstack(e2e_home, "ps", "--all", "--json").stdout)
    assert ps[0]["status"] == "stopped" and ps[0]["exit_code"] == 130


def test_second_ctrl_c_gives_up_and_names_the_command_that_cleans_up(e2e_home, tmp_path):
    # The task ignores SIGTERM, so stopping it takes the seconds before SIGKILL: the window in
    # which the impatient user presses Ctrl+C again.
    write_task(tmp_path, "name: impatient\ncommands:\n  - trap '' TERM\n  - echo started\n  - sleep 600\n")
    process = spawn(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    read_until(process, "started")
    process.send_signal(signal.SIGINT)
    for line in process.stdout:
        if line.startswith("Interrupted"):
            assert "press Ctrl+C again to stop waiting, then run `dstack-iac stop impatient`" in line
            break
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=60)[0]
    assert process.returncode == 130, rest
    assert "Teardown of impatient did not finish (interrupted). Clean up with: dstack-iac stop impatient" in rest
    assert "Torn down" not in rest and "Traceback" not in rest
    assert stack_files(e2e_home), "the stack is still there until the user cleans up"
    assert "orphaned" in dstack(e2e_home, "ps").stdout
    result = dstack(e2e_home, "stop", "impatient")
    assert result.returncode == 0, result.stderr
    assert_nothing_left(e2e_home)


def test_retry_on_error_runs_again_until_the_commands_succeed(e2e_home, tmp_path):
    marker = tmp_path / "first-attempt-done"
    write_task(tmp_path, "retry:\n  on_events: [error]\n  duration: 5m\ncommands:\n"
                         f"  - if [ -f {marker} ]; then echo second-attempt-ok; else touch {marker}; exit 3; fi\n")
    result = dstack(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The commands failed with exit code 3: retrying (attempt 2, on error" in result.stderr
    assert "second-attempt-ok" in result.stdout
    assert_nothing_left(e2e_home)


def test_retry_only_on_the_configured_events_and_within_its_duration(e2e_home, tmp_path):
    write_task(tmp_path, "retry:\n  on_events: [no-capacity, interruption]\ncommands:\n  - exit 3\n", name="a.dstack.yml")
    write_task(tmp_path, "retry:\n  on_events: [error]\n  duration: 1s\ncommands:\n  - sleep 1.5\n  - exit 4\n",
               name="b.dstack.yml")
    not_an_event = dstack(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "a.dstack.yml"), "-y")
    past_duration = dstack(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "b.dstack.yml"), "-y")
    assert (not_an_event.returncode, past_duration.returncode) == (3, 4)
    assert "retrying" not in not_an_event.stderr + past_duration.stderr
    assert_nothing_left(e2e_home)


def test_retry_on_interruption_reprovisions_when_a_node_is_lost(e2e_home, tmp_path):
    from dstack_iac.state.processes import descendants

    marker = tmp_path / "first-attempt"
    write_task(tmp_path, "name: flaky\nretry:\n  on_events: [interruption]\n  duration: 5m\ncommands:\n"
                         f"  - if [ -f {marker} ]; then echo second-attempt-ok; else touch {marker}; echo started; sleep 600; fi\n")
    process = spawn(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    read_until(process, "started")
    # The node goes away: its sshd and the sessions it serves die (the task itself is orphaned).
    [listener] = processes_mentioning(str(e2e_home / "runs" / "flaky" / "nodes" / "0" / "sshd_config"))
    for pid in [*descendants(listener), listener]:
        if "sshd" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            os.kill(pid, signal.SIGKILL)
    rest = process.communicate(timeout=120)[0]
    assert process.returncode == 0, rest
    assert "Lost a node (node 0 (127." in rest and "retrying (attempt 2, on interruption" in rest
    assert "second-attempt-ok" in rest
    assert_nothing_left(e2e_home)


def test_repeated_installs_come_from_the_shared_wheelhouse(e2e_home, tmp_path):
    wheelhouse = tmp_path / "wheelhouse"
    write_task(tmp_path / "task", "nodes: 2\ncommands:\n  - pip install six==1.16.0\n  - python -c 'import six; print(\"six\", six.__version__)'\n")
    env = {"DSTACK_IAC_WHEELHOUSE": str(wheelhouse)}
    runs = [dstack(e2e_home, "run", str(tmp_path / "task"), "-f", str(tmp_path / "task" / "t.dstack.yml"), "-y", env=env)
            for _ in range(2)]
    for result in runs:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[0] six 1.16.0" in result.stdout and "[1] six 1.16.0" in result.stdout
    assert [p.name for p in wheelhouse.glob("*.whl")] == ["six-1.16.0-py2.py3-none-any.whl"]
    # The second run installs on both nodes from the wheelhouse, downloading nothing.
    assert "Downloading" not in runs[1].stdout
    assert runs[1].stdout.count(f"Processing {wheelhouse}/six-1.16.0") == 2


def test_killing_a_node_fails_the_run_and_cleans_up(e2e_home, tmp_path):
    write_task(tmp_path, "nodes: 2\ncommands:\n  - echo up-$DSTACK_NODE_RANK\n  - sleep 600\n")
    process = spawn(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    seen = set()
    for line in process.stdout:
        if "up-" in line:
            seen.add(line.strip())
        if len(seen) == 2:
            break
    task_pid = int(next(e2e_home.glob("runs/*/nodes/1/task.pid")).read_text())
    os.killpg(task_pid, signal.SIGKILL)
    rest = process.communicate(timeout=90)[0]
    assert process.returncode != 0, rest
    assert "Node 1 exited" in rest and "stopping the other nodes" in rest
    assert_nothing_left(e2e_home)


def test_three_runs_at_once_are_isolated(e2e_home, tmp_path):
    processes = []
    for index in range(3):
        directory = tmp_path / f"run{index}"
        write_task(directory, f"name: iso-{index}\ncommands:\n  - echo marker-{index} $DSTACK_RUN_NAME $DSTACK_MASTER_NODE_IP\n"
                              "  - cat mine.txt\n")
        (directory / "mine.txt").write_text(f"content-{index}\n")
        processes.append(spawn(e2e_home, "run", str(directory), "-f", str(directory / "t.dstack.yml"), "-y"))
    outputs = [p.communicate(timeout=180)[0] for p in processes]
    for index, (process, out) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, out
        assert f"marker-{index} iso-{index} 127." in out and f"content-{index}" in out
        others = {f"content-{i}" for i in range(3)} - {f"content-{index}"}
        assert not any(other in out for other in others)
    assert_nothing_left(e2e_home)


def test_active_name_is_refused(e2e_home, tmp_path):
    write_task(tmp_path, "name: busy\ncommands:\n  - echo started\n  - sleep 600\n")
    first = spawn(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    read_until(first, "started")
    second = dstack(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    assert second.returncode == 2
    assert "a run named 'busy' is already active" in second.stderr and "nothing was provisioned" in second.stderr
    stopped = dstack(e2e_home, "stop", "busy")
    assert stopped.returncode == 0, stopped.stderr
    first.communicate(timeout=60)
    assert first.returncode == 143
    assert_nothing_left(e2e_home)


def test_kill_9_leaves_an_orphan_that_stop_cleans_up(e2e_home, tmp_path):
    write_task(tmp_path, "name: orphan\ncommands:\n  - echo started\n  - sleep 600\n")
    process = spawn(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    read_until(process, "started")
    process.kill()
    process.wait()
    ps = dstack(e2e_home, "ps")
    assert "orphaned" in ps.stdout and "dstack-iac stop orphan" in ps.stdout
    assert processes_mentioning(str(e2e_home / "runs")), "the orphan's node is still up before stop"
    result = dstack(e2e_home, "stop", "orphan")
    assert result.returncode == 0, result.stderr
    assert_nothing_left(e2e_home)
    assert json.loads(dstack(e2e_home, "ps", "--all", "--json").stdout)[0]["status"] == "stopped"


def test_ports_are_forwarded_while_attached(e2e_home, tmp_path):
    write_task(tmp_path, "ports: ['*:8765']\ncommands:\n  - echo served > index.html\n"
                         "  - python -m http.server 8765 --bind $DSTACK_MASTER_NODE_IP\n")
    process = spawn(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    try:
        url = None
        for line in process.stdout:
            if "Forwarding http://127.0.0.1:" in line:
                url = line.split("Forwarding ")[1].split()[0]
                break
        assert url
        body, deadline = None, time.monotonic() + 60
        while body is None and time.monotonic() < deadline:  # the server starts after the venv is made
            try:
                body = urllib.request.urlopen(url + "/index.html", timeout=2).read().decode()
            except OSError:
                time.sleep(0.2)
        assert body == "served\n"
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    assert_nothing_left(e2e_home)


@pytest.mark.timeout(1800)  # the first run downloads torch (about 4 GB with its CUDA libraries)
def test_distributed_torchrun_example_uses_both_nodes(e2e_home):
    example = REPO / "examples" / "distributed"
    result = dstack(e2e_home, "run", str(example), "-f", str(example / "train.dstack.yml"), "-y", timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    finals = [line for line in result.stdout.splitlines() if "all_reduce=" in line]
    # Each node's line is prefixed with its rank; the all-reduced 1 + 2 proves both ranks took part.
    assert sorted(line.split()[0] for line in finals) == ["[0]", "[1]"]
    assert all("all_reduce=3 world=2" in line for line in finals)
    weights = {line.split("weights=")[1] for line in finals}
    assert len(weights) == 1, "DDP keeps the replicas identical"
    assert_nothing_left(e2e_home)


def test_preview_creates_nothing(e2e_home):
    result = dstack(e2e_home, "preview", str(HELLO))
    assert result.returncode == 0, result.stderr
    [row] = [line.split() for line in result.stdout.splitlines() if "dstack-iac:local:Node" in line]
    assert row[:3] == ["create", "node-0", "dstack-iac:local:Node"]
    assert "rank=0," in row and "run_name=hello," in row
    # As in Pulumi's own count, the component that groups the nodes is one of the resources.
    [component] = [line.split() for line in result.stdout.splitlines() if "dstack-iac:local:TaskCluster" in line]
    assert component[:3] == ["create", "run", "dstack-iac:local:TaskCluster"]
    # The offer the run was planned on is a component of its stack too, where policies see it.
    [offer] = [line.split() for line in result.stdout.splitlines() if "dstack-iac:run:Offer" in line]
    assert offer[:3] == ["create", "offer", "dstack-iac:run:Offer"] and "backend=local," in offer
    assert "3 to create; nothing was created." in result.stdout
    assert_nothing_left(e2e_home)
    assert not list(e2e_home.glob("runs/*"))


@pytest.mark.parametrize(
    "body,message",
    [
        ("commands: [x]\nresources: {cpu: 4096}\n", "cpu: asks for 4096 CPUs, this machine has"),
        ("commands: [x]\nresources: {memory: 100TB}\n", "memory: asks for 102400GB, this machine has"),
        ("commands: [x]\nresources: {gpu: A100:8}\n", "gpu: asks for A100:8"),
        ("commands: [x]\npython: '3.14'\n", "python: '3.14' is not installed on this machine"),
        ("image: ubuntu\ncommands: [x]\n", "image: the local backend cannot honour it: it runs the commands directly on this machine"),
    ],
)
def test_impossible_requests_fail_before_anything_is_created(e2e_home, tmp_path, body, message):
    path = tmp_path / "t.dstack.yml"
    path.write_text("type: task\n" + body)
    result = dstack(e2e_home, "run", str(tmp_path), "-f", str(path), "-y")
    assert result.returncode in (2, 3)
    assert message in result.stderr and "nothing was provisioned" in result.stderr
    assert not (e2e_home / "runs").exists() and stack_files(e2e_home) == []


def test_upload_over_the_limit_is_refused(e2e_home, tmp_path):
    write_task(tmp_path, "commands: [x]\n")
    (tmp_path / "big.bin").write_bytes(b"\0" * (2 * 1024 * 1024))
    result = dstack(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y",
                    env={"DSTACK_IAC_UPLOAD_LIMIT": "1MB"})
    assert result.returncode == 2
    assert "over the limit of 1MB" in result.stderr and "big.bin" in result.stderr
    assert not (e2e_home / "runs").exists()


def test_args_example_passes_run_arguments(e2e_home):
    example = REPO / "examples" / "args"
    result = dstack(e2e_home, "run", str(example), "-f", str(example / "args.dstack.yml"), "-y",
                    "--train_batch_size=1", "--num_train_epochs=100")
    assert result.returncode == 0, result.stderr
    assert "train_batch_size=1\nnum_train_epochs=100" in result.stdout
    assert_nothing_left(e2e_home)


def test_logs_follow_streams_a_running_run(e2e_home, tmp_path):
    write_task(tmp_path, "name: follow\ncommands:\n  - echo first\n  - sleep 2\n  - echo second\n")
    process = spawn(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    read_until(process, "first")
    followed = dstack(e2e_home, "logs", "follow", "-f", timeout=60)
    process.communicate(timeout=60)
    assert followed.stdout.splitlines()[:2] == ["first", "second"]
    assert_nothing_left(e2e_home)


def test_working_dir_entrypoint_and_a_field_local_cannot_honour(e2e_home, tmp_path):
    (tmp_path / "src" / "app").mkdir(parents=True)
    (tmp_path / "src" / "app" / "here.txt").write_text("inside\n")
    write_task(tmp_path, "working_dir: src/app\ncommands:\n  - pwd\n  - cat here.txt\n", name="wd.dstack.yml")
    write_task(tmp_path, "entrypoint: python -c\ncommands:\n  - import os; print('entry', os.getcwd())\n",
               name="ep.dstack.yml")
    (tmp_path / "shm.dstack.yml").write_text("type: task\nresources: {cpu: 1.., shm_size: 1GB}\ncommands: [echo]\n")
    in_subdir = dstack(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "wd.dstack.yml"), "-y")
    assert in_subdir.returncode == 0, in_subdir.stderr
    assert "/nodes/0/workflow/src/app\ninside" in in_subdir.stdout
    entry = dstack(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "ep.dstack.yml"), "-y")
    assert entry.returncode == 0, entry.stderr
    assert "entry " in entry.stdout and "/nodes/0/workflow" in entry.stdout
    refused = dstack(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "shm.dstack.yml"), "-y")
    assert refused.returncode == 2
    assert "resources.shm_size: the local backend cannot honour it" in refused.stderr
    assert "nothing was provisioned" in refused.stderr
    assert_nothing_left(e2e_home)


def test_runs_are_tagged_stacks_and_progress_is_timed_in_fractions(e2e_home, tmp_path):
    from dstack_iac.infra import engine

    write_task(tmp_path, "name: tagged\ntags: {team: nlp}\ncommands:\n  - echo started\n  - sleep 600\n")
    process = spawn(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    try:
        lines = read_until(process, "started")
        cli = engine.require_pulumi()
        env = {**os.environ, **engine.engine_env(cli)}
        project = tmp_path / "project"
        project.mkdir()
        (project / "Pulumi.yaml").write_text("name: dstack-iac\nruntime: python\n")
        deadline, listed = time.monotonic() + 30, []
        while not listed and time.monotonic() < deadline:  # tags are written beside the run
            import subprocess

            out = subprocess.run([str(cli.path), "stack", "ls", "--json", "--tag", f"dstack-iac:run=tagged"],
                                 cwd=project, env=env, capture_output=True, text=True).stdout
            listed = [s["name"] for s in json.loads(out or "[]")]
            time.sleep(0.5)
        assert listed == ["tagged"]
        # The task's own tags are the stack's too.
        out = subprocess.run([str(cli.path), "stack", "ls", "--json", "--tag", "team=nlp"], cwd=project, env=env,
                             capture_output=True, text=True).stdout
        assert [s["name"] for s in json.loads(out or "[]")] == ["tagged"]
        import re

        assert re.search(r"created node-0 \(dstack-iac:local:Node\) in \d+\.\d\ds", "".join(lines))
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    assert_nothing_left(e2e_home)
