"""The hello run against its floors, side by side in one call (medians of --repeat runs):

- run:    `dstack-iac run` of a one-line task on `local`, 1, 4 and 16 nodes (the CLI's wall time,
          with the run's own phase breakdown and the time outside any phase);
- engine: the naive engine floor: an inline Automation API program declaring one trivial dynamic
          resource (create_stack, up, destroy, remove_stack), same engine, file backend;
- ssh:    the raw OpenSSH floor: start one sshd, `ssh` a command, stop it.

    .venv/bin/python benchmarks/hello.py [--repeat 5] [--nodes 1 4 16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TASK = """type: task
name: bench-{nodes}
nodes: {nodes}
commands:
  - echo "hello from $DSTACK_NODE_RANK"
resources: {{cpu: 1.., memory: 1GB.., disk: 1GB..}}
"""
PHASES = ("plan", "prepare", "provision", "connect", "upload", "execute", "teardown")


def hello_run(home: Path, work: Path, nodes: int) -> dict[str, float]:
    config = work / f"bench{nodes}.dstack.yml"
    config.write_text(TASK.format(nodes=nodes))
    started = time.perf_counter()
    result = subprocess.run([str(REPO / ".venv" / "bin" / "dstack-iac"), "run", str(work), "-f", str(config), "-y"],
                            env={**os.environ, "DSTACK_IAC_HOME": str(home)}, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"run failed:\n{result.stdout}\n{result.stderr}")
    phases = json.loads((home / "runs" / f"bench-{nodes}" / "phases.json").read_text())
    phases["total"] = wall
    phases["outside phases"] = wall - sum(phases.get(p, 0.0) for p in PHASES)
    return phases


ENGINE_FLOOR = r"""
import sys, time
started = time.perf_counter()
import pulumi, pulumi.dynamic
from pulumi import automation as auto
from dstack_iac.infra import engine

class Provider(pulumi.dynamic.ResourceProvider):
    def create(self, props):
        return pulumi.dynamic.CreateResult(id_="x", outs=props)

class Trivial(pulumi.dynamic.Resource):
    def __init__(self, name):
        super().__init__(Provider(), name, {"value": 1})

def program():
    Trivial("trivial")

stack = auto.create_stack("floor", project_name="floor", program=program,
                          opts=engine.workspace_options(project="floor"))
stack.up()
stack.destroy()
stack.workspace.remove_stack("floor")
print(time.perf_counter() - started)
"""


def engine_floor(home: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", ENGINE_FLOOR], capture_output=True, text=True,
                            env={**os.environ, "DSTACK_IAC_HOME": str(home), "PYTHONPATH": str(REPO)})
    if result.returncode != 0:
        raise SystemExit(f"engine floor failed:\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - started


def ssh_floor(scratch: Path) -> float:
    """One sshd started, one `ssh true` through it, the sshd stopped."""
    key, host_key = scratch / "id", scratch / "host"
    for path in (key, host_key):
        if not path.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (scratch / "authorized_keys").write_text((scratch / "id.pub").read_text())
    config = scratch / "sshd_config"
    config.write_text(f"ListenAddress 127.0.0.1:{port}\nHostKey {host_key}\nAuthorizedKeysFile {scratch}/authorized_keys\n"
                      f"PidFile {scratch}/sshd.pid\nUsePAM no\nStrictModes no\nLogLevel ERROR\n")
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    started = time.perf_counter()
    server = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
        subprocess.run(["ssh", "-q", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no",
                        "-o", f"UserKnownHostsFile={scratch}/known_hosts", "-o", "BatchMode=yes",
                        f"{os.environ.get('USER', 'root')}@127.0.0.1", "true"], check=True)
    finally:
        server.terminate()
        server.wait()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        home, work = scratch / "home", scratch / "work"
        work.mkdir()
        (scratch / "ssh").mkdir()
        hello_run(home, work, 1)  # warm: seed venv, catalog, bytecode
        runs = {nodes: [] for nodes in args.nodes}
        floors, sshs = [], []
        for _ in range(args.repeat):  # interleaved, so that every series sees the same machine
            for nodes in args.nodes:
                runs[nodes].append(hello_run(home, work, nodes))
            floors.append(engine_floor(scratch / "floor-home"))
            sshs.append(ssh_floor(scratch / "ssh"))
        floor, ssh = statistics.median(floors), statistics.median(sshs)
        one = statistics.median(s["total"] for s in runs[args.nodes[0]])
        print(f"engine floor (create_stack, up, destroy, remove_stack): {floor:.2f}s")
        print(f"OpenSSH floor (sshd, ssh true, stop):                     {ssh:.3f}s")
        header = ["nodes", *PHASES, "outside phases", "total", "run/engine floor", f"x {args.nodes[0]} node"]
        print(" ".join(f"{h:>14}" for h in header))
        for nodes, samples in runs.items():
            medians = {key: statistics.median(s.get(key, 0.0) for s in samples) for key in (*PHASES, "outside phases",
                                                                                           "total")}
            row = [str(nodes), *(f"{medians[p]:.2f}s" for p in (*PHASES, "outside phases", "total")),
                   f"{medians['total'] / floor:.2f}", f"{medians['total'] / one:.2f}"]
            print(" ".join(f"{cell:>14}" for cell in row))
            report[f"nodes={nodes}"] = medians
        report["engine_floor"], report["ssh_floor"] = floor, ssh
    print(json.dumps(report))


if __name__ == "__main__":
    main()
