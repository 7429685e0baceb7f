"""Detached runs end to end on the local backend, through the CLI: `apply -d`, the terminal
closing, `attach` from two terminals with real port forwards, Ctrl+C on attach, `ssh`, `logs
--since/--node`, `stop` keeping the output's tail and leaving nothing, and a supervisor that dies."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import CLI, OutputReader, assert_nothing_left, dstack, spawn, wait_for, write_task

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _record(home: Path, name: str) -> dict:
    runs = json.loads(dstack(home, "ps", "--all", "--json").stdout)
    return next(r for r in runs if r["name"] == name)


def _get(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None  # not listening yet


@pytest.fixture
def stop_at_the_end(e2e_home):
    """A failing test still stops its runs (the suite checks that nothing is left)."""
    names: list[str] = []
    yield names
    for name in names:
        dstack(e2e_home, "stop", name)


def test_detached_run_survives_its_terminal_and_is_attached_reached_and_stopped(e2e_home, tmp_path, stop_at_the_end):
    stop_at_the_end.append("bg")
    port, other_port = _free_port(), _free_port()
    (tmp_path / "index.html").write_text("served by node 0\n")
    write_task(tmp_path, f"name: bg\nnodes: 2\nports: [{port}]\ncommands:\n"
                         "  - trap 'echo final-words-$DSTACK_NODE_RANK; exit 143' TERM\n"
                         "  - echo started-$DSTACK_NODE_RANK\n"
                         f"  - if [ $DSTACK_NODE_RANK = 0 ]; then python -m http.server {port} --bind "
                         "$DSTACK_MASTER_NODE_IP >/dev/null 2>&1 & fi\n"
                         "  - i=0; while true; do i=$((i+1)); echo tick-$DSTACK_NODE_RANK-$i; sleep 1; done\n")
    # The "terminal": a shell in a session of its own, which runs `apply -d` and stays open.
    command = " ".join([*CLI, "apply", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-d", "-y"])
    started = time.monotonic()
    terminal = subprocess.Popen(["bash", "-c", f"{command}; echo cli-exit=$?; sleep 600"], cwd=tmp_path,
                                env={**os.environ, "DSTACK_IAC_HOME": str(e2e_home), "NO_COLOR": "1"},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    shell = OutputReader(terminal)
    assert shell.wait_for("cli-exit=", timeout=60).strip() == "cli-exit=0", "".join(shell.lines)
    prompt_seconds = time.monotonic() - started
    print(f"\nrun -d to the prompt: {prompt_seconds:.2f}s")
    assert "Run bg goes on in the background" in "".join(shell.lines)
    assert "dstack-iac attach bg" in "".join(shell.lines)
    supervisor = _record(e2e_home, "bg")["owner_pid"]
    os.killpg(terminal.pid, signal.SIGHUP)  # the terminal closes
    terminal.wait(timeout=10)
    wait_for(lambda: _record(e2e_home, "bg")["status"] == "running", 60, "the run runs")
    assert Path(f"/proc/{supervisor}").exists(), "the supervisor outlived its terminal"

    wait_for(lambda: "started-1" in dstack(e2e_home, "logs", "bg").stdout, 30, "both nodes started")
    config = (e2e_home / "ssh" / "config").read_text()
    assert "Host bg-0 bg\n" in config and "Host bg-1\n" in config and "StrictHostKeyChecking yes" in config

    # Two terminals attach at once: one forwards the run's port, the other maps it elsewhere.
    first = OutputReader(spawn(e2e_home, "attach", "bg"))
    second = OutputReader(spawn(e2e_home, "attach", "bg", "--logs", "-p", f"{other_port}:{port}"))
    first.wait_for(f"Forwarding http://127.0.0.1:{port} -> port {port} of node 0")
    second.wait_for(f"Forwarding http://127.0.0.1:{other_port} -> port {port} of node 0")
    assert wait_for(lambda: _get(port), 20, "the app answers") == "served by node 0\n"
    assert wait_for(lambda: _get(other_port), 10, "the tunnel answers") == "served by node 0\n"
    second.wait_for("started-0")  # --logs: from the start
    first.wait_for("tick-1-")  # new lines as they come
    assert not any("started-" in line for line in first.lines), "without --logs only new output"

    # Ctrl+C on one attach detaches it; the run and the other attach go on.
    first.process.send_signal(signal.SIGINT)
    assert "Detached from bg: it goes on" in first.rest(timeout=30)
    assert first.process.returncode == 0
    mark = len(second.lines)
    second.wait_for("tick-0-", since=mark)
    assert _record(e2e_home, "bg")["status"] == "running"
    second.process.send_signal(signal.SIGINT)
    second.rest(timeout=30)

    # ssh: a command in the node's working directory, with the run's environment.
    reached = dstack(e2e_home, "ssh", "bg", "1", "--", "pwd; echo rank=$DSTACK_NODE_RANK; cat index.html")
    assert reached.returncode == 0, reached.stderr
    assert reached.stdout.splitlines() == [str(e2e_home / "runs" / "bg" / "nodes" / "1" / "workflow"), "rank=1",
                                           "served by node 0"]

    # logs: since a time, of one node.
    time.sleep(2.5)
    recent = dstack(e2e_home, "logs", "bg", "--since", "2s").stdout
    assert "tick-" in recent and "started-" not in recent
    assert dstack(e2e_home, "logs", "bg", "--since", "2099-01-01T00:00:00Z").stdout == ""
    node_1 = dstack(e2e_home, "logs", "bg", "--node", "1").stdout.splitlines()
    assert "[1] started-1" in node_1 and all(line.startswith("[1] ") for line in node_1)

    # A node showing another host key is refused.
    known_hosts = e2e_home / "runs" / "bg" / "known_hosts"
    pinned = known_hosts.read_text()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "impostor")], check=True)
    impostor = " ".join((tmp_path / "impostor.pub").read_text().split()[:2])
    known_hosts.write_text("".join(f"{line.split()[0]} {impostor}\n" for line in pinned.splitlines()))
    refused = dstack(e2e_home, "ssh", "bg", "--", "echo should-not-run")
    assert refused.returncode != 0 and "should-not-run" not in refused.stdout
    assert "Host key verification failed" in refused.stderr or "IDENTIFICATION HAS CHANGED" in refused.stderr
    known_hosts.write_text(pinned)

    stopped = dstack(e2e_home, "stop", "bg")
    assert stopped.returncode == 0, stopped.stderr
    tail = dstack(e2e_home, "logs", "bg").stdout
    assert "[0] final-words-0" in tail and "[1] final-words-1" in tail, "the output's tail is kept"
    record = _record(e2e_home, "bg")
    assert (record["status"], record["exit_code"]) == ("stopped", 143)
    assert "bg" not in (e2e_home / "ssh" / "config").read_text()
    assert not Path(f"/proc/{supervisor}").exists()
    assert_nothing_left(e2e_home)


def test_a_dead_supervisor_leaves_an_orphaned_run_that_stop_cleans_up(e2e_home, tmp_path, stop_at_the_end):
    stop_at_the_end.append("lost")
    write_task(tmp_path, "name: lost\ncommands:\n  - echo up\n  - sleep 600\n")
    started = dstack(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-d", "-y")
    assert started.returncode == 0, started.stderr
    wait_for(lambda: "up" in dstack(e2e_home, "logs", "lost").stdout, 60, "the commands run")
    os.kill(_record(e2e_home, "lost")["owner_pid"], signal.SIGKILL)
    assert wait_for(lambda: _record(e2e_home, "lost")["status"] == "orphaned", 10, "orphaned")
    assert "orphaned (clean up: dstack-iac stop lost)" in dstack(e2e_home, "ps").stdout
    cleaned = dstack(e2e_home, "stop", "lost")
    assert cleaned.returncode == 0, cleaned.stderr
    assert_nothing_left(e2e_home)
