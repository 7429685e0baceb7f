"""Ports on `local`, where the nodes share this machine's network: an app listening on all
addresses serves 127.0.0.1 itself (the seeds' serve example), one on its node's address only
gets a tunnel, and a port taken by something else is refused clearly."""

from __future__ import annotations

import signal
import socket
import time
import urllib.request

import pytest

from tests.helpers import assert_nothing_left, read_until, spawn, write_task

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fetch(url: str, seconds: float = 60) -> str | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            return urllib.request.urlopen(url, timeout=2).read().decode()
        except OSError:
            time.sleep(0.2)
    return None


@pytest.mark.parametrize("bind", ["", " --bind $DSTACK_MASTER_NODE_IP"], ids=["all-addresses", "node-address"])
def test_the_serve_example_is_reachable_on_its_own_port(e2e_home, tmp_path, bind):
    port = free_port()
    write_task(tmp_path, f"ports: [{port}]\ncommands:\n  - echo served > index.html\n  - echo listening\n"
                         f"  - python -m http.server {port}{bind}\n")
    process = spawn(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
    try:
        lines = read_until(process, "listening")
        assert any(f"Forwarding http://127.0.0.1:{port} -> port {port} of node 0" in line for line in lines)
        assert fetch(f"http://127.0.0.1:{port}/index.html") == "served\n"
    finally:
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=60)[0]
    assert "Address already in use" not in rest
    assert_nothing_left(e2e_home)


def test_a_port_taken_on_this_machine_is_refused_with_a_way_out(e2e_home, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        write_task(tmp_path, f"ports: [{port}]\ncommands: [sleep 30]\n")
        process = spawn(e2e_home, "run", str(tmp_path), "-f", str(tmp_path / "t.dstack.yml"), "-y")
        out = process.communicate(timeout=120)[0]
    assert process.returncode == 2, out
    assert f"port {port} is already in use on this machine" in out and f"-p {port + 1}:{port}" in out
    assert_nothing_left(e2e_home)
