"""bfloat16 against float32 on the CPU: accuracy on the embedded validation scenes and speed at one size.

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

from harness.bench import bench
from harness.challenge import parse_size
from harness.evaluate import evaluate
from harness.io import read_output
from harness.options import BenchConfig, Device, EvalConfig, Precision

COMPARED = (Precision.fp32, Precision.bf16)  # float16 and TF32 are GPUs' (benchmarks/gpu.py)


def compare_outputs(model: str, tmp: Path, runs: list[tuple[Device, Precision]]) -> None:
    """``harness evaluate`` of ``model`` on the embedded validation scenes once per (device, precision); prints
    a Markdown table of each run's PSNR and its 8-bit output values against the first run's."""
    results = {
        run: evaluate(EvalConfig(model, out=tmp / f"{run[0].value}-{run[1].value}", device=run[0], precision=run[1]))
        for run in runs
    }
    first = runs[0]
    print(
        f"{model}, {len(results[first].scenes)} embedded validation scenes, each run against {first[0].value} {first[1].value}:\n"
    )
    print(
        "| device | precision | PSNR dB | change dB | values within 1 LSB | largest difference LSB |\n|---|---|---|---|---|---|"
    )
    for run, result in results.items():
        d = np.concatenate(
            [np.abs(_output(tmp, run, scene) - _output(tmp, first, scene)).ravel() for scene in results[first].scenes]
        )
        print(
            f"| {run[0].value} | {run[1].value} | {result.psnr:.4f} | {result.psnr - results[first].psnr:+.4f} | "
            f"{100 * np.mean(d <= 1):.2f}% | {d.max()} |",
            flush=True,
        )


def _output(tmp: Path, run: tuple[Device, Precision], scene: str) -> np.ndarray:
    return read_output(tmp / f"{run[0].value}-{run[1].value}" / "res" / f"{scene}-out.tif").astype(int)


def timed(model: str, size: tuple[int, int], precision: Precision, repeats: int) -> float:
    """``harness bench``'s median seconds for ``model`` in ``precision`` on the CPU (a fresh process); median and peak printed."""
    run = bench(BenchConfig(model, size, Device.cpu, repeats=repeats, precision=precision, trust_code=True))["runs"][0]
    print(
        f"{model} 1x9x{size[0]}x{size[1]} {precision.value}: median {run['median_seconds']:.2f} s, "
        f"peak {run['peak_memory_mb']:.0f} MB",
        flush=True,
    )
    return float(run["median_seconds"])


def speed(model: str, size: tuple[int, int], repeats: int) -> None:
    t = {p: timed(model, size, p, repeats) for p in COMPARED}
    print(f"  bfloat16 {t[Precision.fp32] / t[Precision.bf16]:.2f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flowcnrdb_tiny", help="model with bundled weights, for accuracy")
    parser.add_argument("--speed-model", default="flowcnrdb")
    parser.add_argument("--size", default="768x1536")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="precision-") as tmp:
        compare_outputs(args.model, Path(tmp), [(Device.cpu, p) for p in COMPARED])
    speed(args.speed_model, parse_size(args.size), args.repeats)


if __name__ == "__main__":
    main()
