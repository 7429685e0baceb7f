"""What a team's shared backend costs, side by side (medians of --repeat):

- ps:  `dstack-iac ps --all --json` (the CLI's wall time) on a backend holding --records run
       records, on the file backend and on an S3 backend (moto's server on 127.0.0.1, started
       and stopped here), plus the time of the read alone in-process (team.list_runs);
- run: `dstack-iac run` of a one-line task on `local` (as benchmarks/hello.py), with the file
       backend and with the S3 backend: the extra time a run pays for S3.

    .venv/bin/python benchmarks/teams.py [--repeat 5] [--records 200] [--skip-runs]

The records are written as real claims would write them (state/backend_records.py), owned by
another machine, half finished and half active with a live heartbeat.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CLI = str(REPO / ".venv" / "bin" / "dstack-iac")
TASK = """type: task
name: bench-teams
commands:
  - echo "hello from $DSTACK_NODE_RANK"
resources: {cpu: 1.., memory: 1GB.., disk: 1GB..}
"""
SEED = r"""
import os, sys, time
from dstack_iac.state import backend_records
from dstack_iac.state.runs import RunRecord, RunStatus
os.environ["DSTACK_IAC_HOST_ID"] = "colleague-laptop/0"
for n in range(int(sys.argv[1])):
    active = n % 2 == 0
    record = RunRecord(name=f"run-{n:04d}", status=RunStatus.RUNNING if active else RunStatus.DONE, backend="aws",
                       nodes=1 + n % 4, configuration="train.dstack.yml", owner_pid=1000 + n,
                       owner=f"user-{n % 7}", created_at=time.time() - n, host="colleague-laptop",
                       host_id="colleague-laptop/0", price_per_hour=1.006, exit_code=None if active else 0)
    backend_records.claim(record)
    if active:
        backend_records.beat(record)
"""
READ = r"""
import time
from dstack_iac.state import team
started = time.perf_counter()
views = team.list_runs()
print(len(views), time.perf_counter() - started)
"""


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timed(args: list[str], env: dict) -> float:
    started = time.perf_counter()
    result = subprocess.run(args, env=env, capture_output=True, text=True)
    took = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed:\n{result.stdout}\n{result.stderr}")
    return took


def measure_ps(env: dict, records: int, repeat: int) -> dict[str, float]:
    subprocess.run([sys.executable, "-c", SEED, str(records)], env=env, check=True, cwd=REPO)
    listed = json.loads(subprocess.run([CLI, "ps", "--all", "--json"], env=env, capture_output=True, text=True,
                                       check=True).stdout)
    if len(listed) < records:
        raise SystemExit(f"ps listed {len(listed)} of {records} runs")
    floor = [timed([CLI, "--help"], env) for _ in range(repeat)]  # the CLI's start, whatever the command
    walls = [timed([CLI, "ps", "--all", "--json"], env) for _ in range(repeat)]
    reads = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", READ], env=env, capture_output=True, text=True, check=True,
                             cwd=REPO).stdout.split()
        reads.append(float(out[1]))
    return {"ps wall (s)": median(walls), "ps max (s)": max(walls), "cli start (--help) (s)": median(floor),
            "ps beyond the cli start (s)": median(walls) - median(floor), "read in-process (s)": median(reads),
            "runs listed": len(listed)}


def measure_run(env: dict, work: Path, repeat: int) -> dict[str, float]:
    """The run's wall time, and the median of each of its phases (phases.json, as hello.py)."""
    config = work / "bench.dstack.yml"
    config.write_text(TASK)
    walls, phases = [], []
    for _ in range(repeat):
        walls.append(timed([CLI, "run", str(work), "-f", str(config), "-y"], env))
        phases.append(json.loads((Path(env["DSTACK_IAC_HOME"]) / "runs" / "bench-teams" / "phases.json").read_text()))
    result = {"hello run wall (s)": median(walls)}
    for phase in phases[0]:
        result[f"  {phase} (s)"] = median([p.get(phase, 0.0) for p in phases])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--skip-runs", action="store_true")
    options = parser.parse_args()

    from tests.s3 import CREDENTIALS, start_moto, stop_moto

    server = start_moto()
    results: dict[str, dict] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-teams-") as scratch:
            root = Path(scratch)
            base = {key: value for key, value in os.environ.items() if key != "PULUMI_BACKEND_URL"}
            file_env = {**base, "DSTACK_IAC_HOME": str(root / "file-home")}
            s3_env = {**base, **CREDENTIALS, "DSTACK_IAC_HOME": str(root / "s3-home"),
                      "PULUMI_BACKEND_URL": server.backend_url(server.new_bucket()),
                      "PULUMI_CONFIG_PASSPHRASE": "bench"}
            results["file backend"] = measure_ps(file_env, options.records, options.repeat)
            results["s3 backend (moto, loopback)"] = measure_ps(s3_env, options.records, options.repeat)
            if not options.skip_runs:
                for label, env in (("file backend", file_env), ("s3 backend (moto, loopback)", s3_env)):
                    fresh = {**env, "DSTACK_IAC_HOME": str(root / f"run-{len(results)}-{label[:2]}")}
                    work = root / f"work-{label[:2]}"
                    work.mkdir()
                    results[label].update(measure_run(fresh, work, options.repeat))
    finally:
        stop_moto(server)
    print(json.dumps(results, indent=2))
    if not options.skip_runs:
        extra = results["s3 backend (moto, loopback)"]["hello run wall (s)"] - results["file backend"]["hello run wall (s)"]
        print(f"A run costs {extra:+.2f} s with the S3 backend (median of {options.repeat}).")
    for label, result in results.items():
        print(f"ps of {options.records} records, {label}: {result['ps wall (s)']:.2f} s wall, of which "
              f"{result['cli start (--help) (s)']:.2f} s is the CLI's start; the records' read alone "
              f"{result['read in-process (s)']:.3f} s")


if __name__ == "__main__":
    main()
