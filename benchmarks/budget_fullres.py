"""Wall time and peak memory of `harness budget` at full resolution (run by hand).

    python benchmarks/budget_fullres.py [--model flowcnrdb] [--size 768x1536]

Runs the budget in a child process and reads its peak resident memory, so the
figure is the command's own. Goal: under 120 s and under 3 GB for FlowCNRDB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="flowcnrdb")
    parser.add_argument("--size", default="768x1536")
    args = parser.parse_args()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "budget", "--model", args.model, "--size", args.size, "--json"],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    if proc.returncode not in (0, 1):
        sys.exit(proc.stderr)
    doc = json.loads(proc.stdout)
    print(f"{args.model} at {args.size}: {seconds:.1f} s wall, {peak_gb:.2f} GB peak memory (goal: < 120 s, < 3 GB)")
    for name, c in doc["counters"].items():
        print(f"  {name:18s} {c['macs'] / 1e12:8.4f} T MACs  ({c['how']}, {c['seconds']:.1f} s)")
    print(f"  official: {doc['verdicts']['official']}")


if __name__ == "__main__":
    main()
