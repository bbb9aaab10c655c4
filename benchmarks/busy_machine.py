"""Latency on a quiet and on a busy machine: FlowCNRDB's fast path beside its own single-thread time
and, optionally, the published code, all measured with ``harness bench`` in one run.

    python benchmarks/busy_machine.py [--size 192x384] [--busy 0,1,2] [--repeats 3]
        [--published PATH/Model_01_FlowCNRDB.py:FlowCNRDBModel] [--max-seconds 1800]

For each number of busy processes it starts that many competitors (``while True: pass`` in a
fresh interpreter, each ending by itself after ``--max-seconds`` and stopped as soon as its
condition is measured), then times every configuration with ``harness.bench.bench``: ours with
the default threads and with one thread, and the published code the same two ways when
``--published`` names its file (fetch SimonLarsen/ntire2025_rawfusion_submission; it needs
einops). Prints a Markdown table: medians, ours / ours-with-one-thread under the same load, and
published / ours.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from harness.bench import bench
from harness.challenge import parse_size
from harness.options import BenchConfig

COMPETITOR = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@contextmanager
def competitors(count: int, seconds: float) -> Iterator[None]:
    """``count`` busy processes for the duration of the block (each also ends by itself after ``seconds``)."""
    procs = [subprocess.Popen([sys.executable, "-c", COMPETITOR.format(seconds=seconds)]) for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def median(model: str, size: tuple[int, int], threads: int | None, repeats: int) -> float:
    doc = bench(BenchConfig(model=model, size=size, threads=threads, warmup=1, repeats=repeats, trust_code=True))
    return doc["runs"][0]["median_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="192x384")
    parser.add_argument("--busy", default="0,1,2", help="numbers of busy processes, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="flowcnrdb")
    parser.add_argument("--published", default=None, help="the published model as FILE.py:CLASS")
    parser.add_argument("--max-seconds", type=float, default=1800, help="each competitor's own time limit")
    args = parser.parse_args()
    size = parse_size(args.size)
    configs = [("ours", args.model, None), ("ours, 1 thread", args.model, 1)]
    if args.published:
        configs += [("published", args.published, None), ("published, 1 thread", args.published, 1)]
    print(f"{args.model} 1x9x{size[0]}x{size[1]}, median of {args.repeats} after one warm-up, seconds\n")
    print(
        "| busy processes | "
        + " | ".join(name for name, _, _ in configs)
        + " | ours / ours 1 thread |"
        + (" published / ours |" if args.published else "")
    )
    print("|---" * (len(configs) + 2 + bool(args.published)) + "|")
    for count in (int(c) for c in args.busy.split(",")):
        with competitors(count, args.max_seconds):
            t = [median(model, size, threads, args.repeats) for _, model, threads in configs]
        row = [str(count)] + [f"{v:.2f}" for v in t] + [f"{t[0] / t[1]:.2f}x"]
        if args.published:
            row.append(f"{t[2] / t[0]:.2f}x")
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
