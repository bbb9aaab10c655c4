"""FlowCNRDB on a GPU: full-resolution latency and peak memory in float32, AMP float16 and AMP bfloat16,
each AMP output against float32's.

    python benchmarks/gpu.py [--model flowcnrdb] [--size 768x1536] [--warmup 3] [--repeats 10]

Every precision runs through ``harness bench --device cuda --compare-faithful`` (CUDA events and
synchronisation, ``max_memory_allocated``, each configuration in a fresh process). On a GPU FlowCNRDB
takes its faithful path; the comparison's second run is float32, so its difference is the AMP error.
Prints a Markdown table for the README. Exits with one line where no CUDA device is available.
"""

from __future__ import annotations

import argparse
import sys

import torch

from harness.bench import BenchConfig, bench
from harness.cli.common import parse_size
from harness.inference import Device, Precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flowcnrdb")
    parser.add_argument("--size", default="768x1536")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py: no CUDA device is available")
    size = parse_size(args.size)
    print(f"{args.model} 1x9x{size[0]}x{size[1]} on {torch.cuda.get_device_name()}, torch {torch.__version__}\n")
    print("| precision | median ms | IQR ms | peak memory MB | max abs difference to float32 |\n|---|---|---|---|---|")
    for precision in Precision:
        doc = bench(BenchConfig(args.model, size, Device.cuda, warmup=args.warmup, repeats=args.repeats,
                                precision=precision, compare_faithful=True))
        run = doc["runs"][0]
        print(f"| {precision.value} | {1000 * run['median_seconds']:.1f} | {1000 * run['iqr_seconds']:.1f} | "
              f"{run['peak_memory_mb']:.0f} | {doc['faithful_max_abs_diff']:.3g} |", flush=True)


if __name__ == "__main__":
    main()
