"""Wall time of `dstack-iac offers --gpu A100:8 -b aws` (the whole CLI, as a user runs it).

    .venv/bin/python benchmarks/offers.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMAND = [sys.executable, "-m", "dstack_iac", "offers", "--gpu", "A100:8", "-b", "aws"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    subprocess.run(COMMAND, capture_output=True, check=True)  # warm: the parsed-catalog cache, disk cache
    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        subprocess.run(COMMAND, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    print(f"offers --gpu A100:8 -b aws: median {statistics.median(times):.3f}s, min {min(times):.3f}s, "
          f"max {max(times):.3f}s over {args.repeat} runs")


if __name__ == "__main__":
    main()
