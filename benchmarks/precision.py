"""bfloat16 against float32: accuracy on the embedded validation scenes and speed at one size.

    python benchmarks/precision.py [--model flowcnrdb_tiny] [--speed-model flowcnrdb] [--size 768x1536] [--repeats 2]

Accuracy: ``harness evaluate`` twice on the embedded validation scenes with the bundled weights
(``--precision fp32`` and ``bf16``), then the PSNR change and the share of output values (8-bit)
within one LSB of float32's. Speed: ``harness bench`` of ``--speed-model`` in both precisions
(seeded weights, each in a fresh process). Refused where the CPU lacks bfloat16.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from harness.bench import BenchConfig, bench
from harness.cli.common import parse_size
from harness.evaluate import EvalConfig, evaluate
from harness.inference import Precision
from harness.io import read_output


COMPARED = (Precision.fp32, Precision.bf16)  # float16 is autocast on GPUs only


def accuracy(model: str, tmp: Path) -> None:
    runs = {p: evaluate(EvalConfig(model, out=tmp / p.value, precision=p)) for p in COMPARED}
    diffs = []
    for scene in runs[Precision.fp32].scenes:
        a, b = (read_output(tmp / p.value / "res" / f"{scene}-out.tif").astype(int) for p in COMPARED)
        diffs.append(np.abs(a - b).ravel())
    d = np.concatenate(diffs)
    fp32, bf16 = runs[Precision.fp32].psnr, runs[Precision.bf16].psnr
    print(f"{model}, {len(diffs)} embedded validation scenes: PSNR float32 {fp32:.4f} dB, bfloat16 {bf16:.4f} dB "
          f"(change {bf16 - fp32:+.4f} dB); {100 * np.mean(d <= 1):.2f}% of values within 1 LSB, largest {d.max()} LSB")


def speed(model: str, size: tuple[int, int], repeats: int) -> None:
    t = {p: bench(BenchConfig(model, size, repeats=repeats, precision=p))["runs"][0] for p in COMPARED}
    for p, run in t.items():
        print(f"{model} 1x9x{size[0]}x{size[1]} {p.value}: median {run['median_seconds']:.2f} s, peak {run['peak_memory_mb']:.0f} MB")
    print(f"  bfloat16 {t[Precision.fp32]['median_seconds'] / t[Precision.bf16]['median_seconds']:.2f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flowcnrdb_tiny", help="model with bundled weights, for accuracy")
    parser.add_argument("--speed-model", default="flowcnrdb")
    parser.add_argument("--size", default="768x1536")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="precision-") as tmp:
        accuracy(args.model, Path(tmp))
    speed(args.speed_model, parse_size(args.size), args.repeats)


if __name__ == "__main__":
    main()
