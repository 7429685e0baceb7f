"""`--reload` end to end on the local backend, through the CLI: an HTTP app the task starts
serves a file edited here within a bounded wait (the time from the save to the node having it is
measured); a file deleted here goes from the node. And the refusals: no ports, or -d."""

from __future__ import annotations

import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import OutputReader, assert_nothing_left, dstack, spawn, wait_for, write_task

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(port: int, name: str) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{name}", timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None  # not listening yet, or not there


def test_an_edited_file_is_served_by_the_node_and_a_deleted_one_goes(e2e_home, tmp_path):
    port = _free_port()
    (tmp_path / "index.html").write_text("version 1\n")
    (tmp_path / "old.txt").write_text("to be deleted\n")
    (tmp_path / ".dstackignore").write_text("scratch.txt\n")
    write_task(tmp_path, f"name: live\nports: [{port}]\ncommands:\n"
                         f"  - python -m http.server {port} --bind $DSTACK_MASTER_NODE_IP\n")
    cli = OutputReader(spawn(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y", "--reload"))
    try:
        cli.wait_for(f"Forwarding http://127.0.0.1:{port} -> port {port} of node 0")
        cli.wait_for("Reload: watching")
        assert wait_for(lambda: _get(port, "index.html"), 30, "the app answers", every=0.01) == "version 1\n"
        on_node = e2e_home / "runs" / "live" / "nodes" / "0" / "workflow"
        assert (on_node / "old.txt").is_file()

        mark = len(cli.lines)
        saved = time.monotonic()
        (tmp_path / "index.html").write_text("version 2\n")
        wait_for(lambda: (on_node / "index.html").read_text() == "version 2\n", 5, "the node has the saved file",
                 every=0.01)
        save_to_node = time.monotonic() - saved
        assert wait_for(lambda: _get(port, "index.html") == "version 2\n", 5, "the app serves the new content",
                        every=0.01)
        save_to_served = time.monotonic() - saved
        print(f"\n--reload: save to node {save_to_node * 1000:.0f} ms, to served {save_to_served * 1000:.0f} ms")
        assert save_to_node < 2.0, "a save reaches the node within a second or so"
        report = cli.wait_for("Reload: sent", since=mark)
        print(report.strip())
        assert "Reload: sent index.html (1 file, 10 B) to 1 node" in report

        mark = len(cli.lines)
        (tmp_path / "scratch.txt").write_text("ignored: never sent\n")
        (tmp_path / "old.txt").unlink()
        wait_for(lambda: not (on_node / "old.txt").exists(), 5, "the deleted file goes from the node", every=0.01)
        assert "deleted old.txt" in cli.wait_for("Reload: deleted", since=mark)
        assert _get(port, "old.txt") is None
        assert not (on_node / "scratch.txt").exists()
    finally:
        cli.process.send_signal(signal.SIGINT)
        rest = cli.rest(timeout=60)
    assert cli.process.returncode == 130, rest
    assert "scratch.txt" not in "".join(cli.lines)
    assert_nothing_left(e2e_home)


@pytest.mark.parametrize("body, flags, message", [
    ("commands: [python app.py]\n", (), "--reload is for an app the run serves, and the task has no ports"),
    ("ports: [8000]\ncommands: [python app.py]\n", ("-d",), "it cannot go with -d"),
])
def test_reload_is_refused_without_ports_and_with_detach(e2e_home, tmp_path, body, flags, message):
    write_task(tmp_path, body)
    result = dstack(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y", "--reload", *flags)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not list(Path(e2e_home).glob("runs/*/nodes"))
    assert_nothing_left(e2e_home)
