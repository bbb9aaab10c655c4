"""Every backend on each model, side by side in one run: one Markdown table.

    python benchmarks/backends.py [--models flowcnrdb,unet_baseline] [--size 384x768] [--threads 2]
        [--backends eager,fast,compile,onnxruntime,openvino] [--precisions fp32,bf16] [--repeats 2]
        [--published PATH/Model_01_FlowCNRDB.py:FlowCNRDBModel]

Each (model, backend, precision) runs through ``harness.bench.bench`` (a fresh process each: seeded
weights N(0, 0.02), set-up timed, ``--repeats`` timed passes after one warm-up, the equivalence gate on
the same burst). Combinations a backend cannot serve are listed as such. ``--published`` times the
published FlowCNRDB code (fetch SimonLarsen/ntire2025_rawfusion_submission; it needs einops) in float32
eager in the same run, and FlowCNRDB rows get their ratio to it. Prints the machine (CPU, ISA, AMX) first.
"""

from __future__ import annotations

import argparse
from typing import Any

from harness.bench import bench, cpu_isa, machine
from harness.challenge import parse_size
from harness.errors import HarnessError
from harness.options import BenchConfig, Device, Precision


def run(
    model: str, backend: str, precision: Precision, args: argparse.Namespace, trust: bool = False
) -> dict[str, Any] | str:
    try:
        doc = bench(
            BenchConfig(
                model,
                parse_size(args.size),
                Device.cpu,
                threads=args.threads,
                repeats=args.repeats,
                precision=precision,
                backends=[backend],
                trust_code=trust,
            )
        )
    except HarnessError as exc:
        return str(exc)
    return doc["runs"][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="flowcnrdb,unet_baseline")
    parser.add_argument("--size", default="384x768")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backends", default="eager,fast,compile,onnxruntime,openvino")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--published")
    args = parser.parse_args()
    m = machine()
    print(
        f"{m['cpu']}, ISA {m['isa']}, AMX {m['amx']}, AVX512-BF16 {m['avx512_bf16']}, {m['cores']} cores, torch {m['torch']}; "
        f"{args.size}, {args.threads} threads, load {m['load_average'][0]}\n"
    )
    published = None
    if args.published:
        got = run(args.published, "eager", Precision.fp32, args, trust=True)
        published = got["median_seconds"] if isinstance(got, dict) else None
        print(
            f"published code, eager fp32: {got['median_seconds']:.2f} s\n"
            if isinstance(got, dict)
            else f"published code: {got}\n"
        )
    print(
        "| model | backend | precision | seconds | x eager fp32 | x published | max diff | peak MB | set-up s |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    for model in args.models.split(","):
        eager = None
        for backend in args.backends.split(","):
            for name in args.precisions.split(","):
                got = run(model, backend, Precision(name), args)
                if isinstance(got, str):
                    print(f"| {model} | {backend} | {name} | – | | | {got.split(': ', 1)[-1]} | | |", flush=True)
                    continue
                s = got["median_seconds"]
                if backend == "eager" and name == "fp32":
                    eager = s
                gate = got["gate"]
                diff = (
                    "0 (reference)"
                    if gate is None
                    else f"{gate['max_abs_diff']:.2g}" + (" REFUSED" if got["refused"] else "")
                )
                vs_pub = f"{published / s:.2f}" if published and model.startswith("flowcnrdb") else ""
                print(
                    f"| {model} | {backend} | {name} | {s:.2f} | {'' if eager is None else f'{eager / s:.2f}'} | {vs_pub} | {diff} | "
                    f"{got['peak_memory_mb']:.0f} | {got['setup_seconds']:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    assert cpu_isa()
    main()
