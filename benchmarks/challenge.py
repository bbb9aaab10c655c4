"""The organiser's overhead per team against the model's own inference time: one Markdown table.

    python benchmarks/challenge.py [--teams 3] [--scenes 3] [--size 256x512] [--latency]

Builds a challenge folder in a temporary directory: ``flowcnrdb_tiny`` as a code submission (``harness package
code``) and copies of it as further teams, on synthetic data of ``--scenes`` scenes; runs ``harness challenge run``
on it in bubblewrap and reports, per team, the harness's own work (lint, sandbox start, budget at 768x1536, the
report) beside the evaluation of the scenes (inference and scoring) and, with ``--latency``, the bench protocol.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.bench import cpu_isa, machine
from harness.io import read_json


def sandbox_start(repeats: int = 5) -> float:
    """Seconds to start and leave an empty bubblewrap sandbox like the teams' (median of ``repeats``)."""
    from harness.organise.sandbox import isolation

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(["bwrap", *isolation([], []), "true"], check=True)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teams", type=int, default=3)
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--size", default="256x512")
    parser.add_argument("--latency", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="harness-challenge-bench-"))
    harness = [sys.executable, "-m", "harness.cli"]
    try:
        h, w = args.size.split("x")
        synth = [
            "data",
            "synth",
            root / "data",
            "--train-scenes",
            "0",
            "--val-scenes",
            str(args.scenes),
            "--size",
            args.size,
        ]
        subprocess.run([*harness, *map(str, synth)], check=True, capture_output=True)
        subs = root / "subs"
        subs.mkdir()
        code = ["package", "code", "submissions/flowcnrdb_tiny.toml", "--out", str(subs / "team0.zip")]
        subprocess.run([*harness, *code], check=True, capture_output=True)
        for i in range(1, args.teams):
            shutil.copy(subs / "team0.zip", subs / f"team{i}.zip")
        run = ["challenge", "run", "--submissions", str(subs), "--data", str(root / "data"), "--out", str(root / "out")]
        t0 = time.perf_counter()
        subprocess.run([*harness, *run, *([] if args.latency else ["--no-latency"])], check=True, capture_output=True)
        wall = time.perf_counter() - t0
        start = sandbox_start()
        host = machine()
        print(f"{host['cpu']} ({cpu_isa()['isa']}), {host['cores']} cores; {args.teams} teams of flowcnrdb_tiny, "
              f"{args.scenes} scenes of {h}x{w}; whole run {wall:.1f} s\n")  # fmt: skip
        print(
            "| team | lint | sandbox start | interpreter and imports | evaluate (inference, scoring) | "
            "budget (768x1536) | report | latency | job in all |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for i in range(args.teams):
            row = read_json(root / "out" / "teams" / f"team{i}" / "row.json")
            p = row["phases"]
            rest = row["job_seconds"] - sum(p.values()) - start
            cells = [row["lint_seconds"], start, rest, p["evaluate"], p["budget"], p["report"], p.get("latency")]
            cells.append(row["job_seconds"])
            print(f"| team{i} | " + " | ".join("-" if c is None else f"{c:.3f} s" for c in cells) + " |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
