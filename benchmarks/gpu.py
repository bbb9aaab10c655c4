"""FlowCNRDB on a GPU: full-resolution latency and peak memory in each precision, each output against
float32's, and the accuracy of each precision on the embedded validation scenes.

    python benchmarks/gpu.py [--model flowcnrdb] [--size 768x1536] [--warmup 3] [--repeats 10]
        [--accuracy-model flowcnrdb_tiny] [--published PATH/Model_01_FlowCNRDB.py:FlowCNRDBModel]

Speed: every precision (IEEE float32, TF32 tensor cores, AMP bfloat16, AMP float16) runs through
``harness bench --device cuda`` with the eager backend (seeded weights, CUDA events and synchronisation,
``max_memory_allocated``, each configuration in a fresh process); each run's equivalence gate gives its
difference to IEEE float32. ``--published``
times the published code (float32 and TF32) in the same run. Accuracy: ``harness evaluate`` of
``--accuracy-model`` with its bundled weights on the CPU in float32 and on the GPU in each precision,
each against the CPU's outputs. Prints Markdown tables for the README; exits with one line where no
CUDA device is available.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from precision import compare_outputs  # benchmarks/precision.py, beside this file

from harness.bench import bench
from harness.challenge import parse_size
from harness.options import BenchConfig, Device, Precision


def speed(args: argparse.Namespace, size: tuple[int, int]) -> None:
    print(f"{args.model} 1x9x{size[0]}x{size[1]}, seeded weights, warm-up {args.warmup}, {args.repeats} timed:\n")
    print(
        "| model | precision | median ms | IQR ms | peak memory MB | max abs difference to IEEE float32 |\n"
        "|---|---|---|---|---|---|"
    )
    for precision in Precision:
        doc = bench(
            BenchConfig(
                args.model,
                size,
                Device.cuda,
                warmup=args.warmup,
                repeats=args.repeats,
                precision=precision,
                backends=["eager"],
            )
        )
        gate = doc["runs"][0]["gate"]
        _row(args.model, doc, "0" if gate is None else f"{gate['max_abs_diff']:.3g}")
    if args.published:
        for precision in (Precision.fp32, Precision.tf32):
            doc = bench(
                BenchConfig(
                    args.published,
                    size,
                    Device.cuda,
                    warmup=args.warmup,
                    repeats=args.repeats,
                    precision=precision,
                    trust_code=True,
                )
            )
            _row("published", doc, "")


def _row(name: str, doc: dict, diff: str) -> None:
    run = doc["runs"][0]
    print(
        f"| {name} | {doc['precision']} | {1000 * run['median_seconds']:.1f} | {1000 * run['iqr_seconds']:.1f} | "
        f"{run['peak_memory_mb']:.0f} | {diff} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flowcnrdb")
    parser.add_argument("--size", default="768x1536")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--accuracy-model", default="flowcnrdb_tiny", help="a model with bundled weights")
    parser.add_argument("--published", help="FILE.py:CLASS of the published code, timed beside ours")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py: no CUDA device is available")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}\n")
    speed(args, parse_size(args.size))
    print()
    with tempfile.TemporaryDirectory(prefix="gpu-accuracy-") as tmp:
        runs = [(Device.cpu, Precision.fp32)] + [(Device.cuda, p) for p in Precision]
        compare_outputs(args.accuracy_model, Path(tmp), runs)


if __name__ == "__main__":
    main()
