"""Median wall time of each phase of a local run (plan, stack up, connect, commands, destroy)
for hello with 1 and 4 nodes, and the overhead over the commands' own time.

    .venv/bin/python benchmarks/run_phases.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASK = """type: task
name: bench-{nodes}
nodes: {nodes}
commands:
  - echo "hello from $DSTACK_NODE_RANK"
resources: {{cpu: 1.., memory: 1GB.., disk: 1GB..}}
"""
PHASES = ("plan", "stack_up", "connect", "commands", "destroy")


def one_run(home: Path, work: Path, nodes: int) -> dict[str, float]:
    config = work / f"bench{nodes}.dstack.yml"
    config.write_text(TASK.format(nodes=nodes))
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "dstack_iac", "run", str(work), "-f", str(config), "-y"],
                            env={**os.environ, "DSTACK_IAC_HOME": str(home)}, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"run failed:\n{result.stdout}\n{result.stderr}")
    phases = json.loads((home / "runs" / f"bench-{nodes}" / "phases.json").read_text())
    phases["total"] = wall
    return phases


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home, work = Path(tmp) / "home", Path(tmp) / "work"
        work.mkdir()
        report = {}
        for nodes in (1, 4):
            samples = [one_run(home, work, nodes) for _ in range(args.repeat)]
            medians = {phase: statistics.median(s[phase] for s in samples) for phase in (*PHASES, "total")}
            medians["overhead"] = medians["total"] - medians["commands"]
            report[f"nodes={nodes}"] = medians
        print(f"{'':10}" + "".join(f"{p:>10}" for p in (*PHASES, "total", "overhead")))
        for key, medians in report.items():
            print(f"{key:10}" + "".join(f"{medians[p]:>9.2f}s" for p in (*PHASES, "total", "overhead")))
        print(json.dumps(report))


if __name__ == "__main__":
    main()
