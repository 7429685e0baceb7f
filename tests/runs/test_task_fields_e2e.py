"""The task fields dstack users bring, honoured end to end on `local` through the CLI: repos at a
commit, files at relative, `~` and absolute paths, node groups, startup order and stop criteria,
secrets, utilization_policy and stop_duration."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest

from dstack_iac.errors import ExitStatus
from tests.helpers import assert_nothing_left, dstack, read_until, spawn, write_task

pytestmark = pytest.mark.e2e


def _run(home: Path, directory: Path, *extra: str, env: dict | None = None, timeout: float = 300):
    return dstack(home, "run", str(directory), "-f", str(directory / "t.dstack.yml"), "-y", *extra, env=env,
                  timeout=timeout)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def _values(output: str, key: str) -> list[str]:
    return re.findall(rf"{key}=(\S*)", output)


def test_a_repo_at_a_commit_has_its_history_and_files_at_paths_land_privately(e2e_home, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("*.ckpt\n")
    (repo / "model.py").write_text("version one\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first commit")
    first = _git(repo, "rev-parse", "HEAD")
    (repo / "model.py").write_text("version two\n")
    _git(repo, "commit", "-q", "-am", "second commit")
    (repo / "notes.txt").write_text("untracked, not ignored\n")
    (repo / "weights.ckpt").write_text("ignored\n")
    task_dir = tmp_path / "task"
    (task_dir / "data").mkdir(parents=True)
    (task_dir / "data" / "train.csv").write_text("a,b\n1,2\n")
    (task_dir / "run.sh").write_text("echo runnable\n")
    (task_dir / "run.sh").chmod(0o755)
    absolute = f"/opt/dstack-iac-files-{tmp_path.name}/config.yml"
    write_task(task_dir, f"""name: sources
repos:
  - local_path: ../repo
    hash: {first}
files:
  - data/train.csv:inputs/train.csv
  - local_path: run.sh
    path: ~/bin/run.sh
  - data/train.csv:{absolute}
commands:
  - git log --format=subject=%s
  - echo repo_dir=$DSTACK_REPO_DIR pwd=$PWD
  - cat model.py
  - ls -A | sort | tr '\\n' ' '; echo
  - cat inputs/train.csv | tr '\\n' ' '; echo
  - ~/bin/run.sh
  - test -x ~/bin/run.sh && echo mode-kept
  - cat {absolute} | tr '\\n' ' '; echo
""")
    result = _run(e2e_home, task_dir)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert _values(out, "subject") == ["first"], "the repo is at the given commit, its history with it"
    assert "version one" in out and "version two" not in out
    [repo_dir] = _values(out, "repo_dir")
    assert repo_dir and _values(out, "pwd") == [repo_dir]
    listing = next(line for line in out.splitlines() if ".git " in line)
    assert "notes.txt" in listing and "weights.ckpt" not in listing and "model.py" in listing
    assert out.count("a,b 1,2") == 2, "a file at a relative path and one at an absolute path"
    assert "runnable" in out and "mode-kept" in out
    assert not Path(absolute).exists() and not Path(absolute).parent.exists(), "the host's /opt is untouched"
    assert_nothing_left(e2e_home)


def test_node_groups_rank_across_groups_and_the_master_ends_the_run(e2e_home, tmp_path):
    write_task(tmp_path, """name: groups
startup_order: master-first
stop_criteria: master-done
priority: 42
groups:
  - name: master
    nodes: 1
    commands:
      - echo start-$DSTACK_NODE_RANK=$(date +%s.%N)
      - echo rank=$DSTACK_NODE_RANK nodes=$DSTACK_NODES_NUM gpus=$DSTACK_GPUS_PER_NODE
      - echo ips=$(echo "$DSTACK_NODES_IPS" | tr '\\n' ,) master=$DSTACK_MASTER_NODE_IP
      - echo second-worker=${{ groups[1].nodes[1].IP_ADDRESS }}
      - sleep 3
  - name: workers
    nodes: 2
    commands:
      - echo start-$DSTACK_NODE_RANK=$(date +%s.%N)
      - echo rank=$DSTACK_NODE_RANK nodes=$DSTACK_NODES_NUM
      - sleep 600
""")
    result = _run(e2e_home, tmp_path, timeout=200)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert sorted(_values(out, "rank")) == ["0", "1", "2"] and _values(out, "nodes") == ["3", "3", "3"]
    [ips] = _values(out, "ips")
    addresses = ips.strip(",").split(",")
    assert len(set(addresses)) == 3 and _values(out, "master") == [addresses[0]]
    assert _values(out, "second-worker") == [addresses[2]]
    starts = {rank: float(_values(out, f"start-{rank}")[0]) for rank in range(3)}
    assert starts[0] < starts[1] and starts[0] < starts[2], "the workers started after the master"
    assert "stop_criteria: master-done" in result.stdout + result.stderr
    ps = json.loads(dstack(e2e_home, "ps", "--all", "--json").stdout)
    assert [(run["name"], run["status"], run["priority"]) for run in ps] == [("groups", "done", 42)]
    assert "PRIORITY" in dstack(e2e_home, "ps", "--all").stdout
    assert_nothing_left(e2e_home)


def test_a_secret_reaches_the_task_and_nothing_else(e2e_home, tmp_path):
    value = "s3cr3t-Value-7781"
    stored = dstack(e2e_home, "secret", "set", "HF_TOKEN", input=value + "\n", timeout=60)
    assert stored.returncode == 0, stored.stderr
    assert "HF_TOKEN" in dstack(e2e_home, "secret", "list").stdout
    write_task(tmp_path, """name: secretive
env:
  HF_TOKEN: ${{ secrets.HF_TOKEN }}
commands:
  - echo length=${#HF_TOKEN}
  - echo "the token is $HF_TOKEN"
""")
    validated = dstack(e2e_home, "validate", "-f", str(tmp_path / "t.dstack.yml"))
    assert validated.returncode == 0 and value not in validated.stdout + validated.stderr
    result = _run(e2e_home, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _values(result.stdout, "length") == [str(len(value))], "the task got the value"
    assert "the token is ***" in result.stdout and value not in result.stdout + result.stderr
    assert "the token is ***" in dstack(e2e_home, "logs", "secretive").stdout
    ps = dstack(e2e_home, "ps", "--all", "--json")
    assert value not in ps.stdout
    leaked = [path for path in e2e_home.rglob("*") if path.is_file() and value.encode() in path.read_bytes()]
    assert leaked == [], "the secret's value is in the state dir"
    assert_nothing_left(e2e_home)


def test_utilization_policy_stops_a_run_whose_gpus_idle(e2e_home, tmp_path):
    # These machines have no GPU: a stand-in nvidia-smi on the node's PATH reports 3% on two GPUs.
    write_task(tmp_path, """name: idle
utilization_policy:
  min_gpu_utilization: 10
  time_window: 5m
commands:
  - printf '#!/bin/sh\\necho 3\\necho 3\\n' > "$DSTACK_VENV_DIR/bin/nvidia-smi"
  - chmod +x "$DSTACK_VENV_DIR/bin/nvidia-smi"
  - echo stand-in-ready
  - sleep 600
""")
    result = _run(e2e_home, tmp_path, env={"DSTACK_IAC_UTILIZATION_WINDOW": "3"}, timeout=200)
    assert result.returncode == ExitStatus.IDLE, result.stdout + result.stderr
    assert "stand-in-ready" in result.stdout
    assert "utilization_policy: every GPU stayed below 10% for 3s: stopping the run" in result.stderr
    assert_nothing_left(e2e_home)


@pytest.mark.parametrize("stop_duration, outcome", [("10s", "cleaned-up"), ("2s", "killed")])
def test_stop_duration_is_the_graceful_stop_window(e2e_home, tmp_path, stop_duration, outcome):
    # On SIGTERM the task takes 5 s to clean up: within a 10 s window it finishes, past 2 s it is killed.
    write_task(tmp_path, f"""name: graceful
stop_duration: {stop_duration}
commands:
  - trap 'echo got-term; sleep 5; echo cleaned-up; exit 0' TERM
  - echo waiting
  - sleep 600 & wait
""")
    process = spawn(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    seen = read_until(process, "waiting")  # the trap is set: the commands are running
    process.send_signal(signal.SIGINT)
    out = "".join(seen) + process.communicate(timeout=200)[0]
    assert process.returncode == ExitStatus.INTERRUPTED, out
    assert "got-term" in out
    assert ("cleaned-up" in out) == (outcome == "cleaned-up"), out
    assert_nothing_left(e2e_home)


def test_max_duration_stops_the_run_with_its_own_exit_status(e2e_home, tmp_path):
    write_task(tmp_path, "name: bounded\nmax_duration: 5s\ncommands:\n  - sleep 600\n")
    result = _run(e2e_home, tmp_path, timeout=200)
    assert result.returncode == ExitStatus.TIMEOUT, result.stdout + result.stderr
    assert "max_duration (5s) reached: stopping the run" in result.stderr
    assert_nothing_left(e2e_home)
