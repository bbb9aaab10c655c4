"""Tiled against untiled inference at full size: is tiling only as dear as the pixels it recomputes?

    python benchmarks/tiling_speed.py [--model flowcnrdb] [--size 768x1536] [--tile 256] [--overlap 64] [--batch 4]

Runs the model once untiled and once tiled on one random burst (seeded weights of realistic scale), in one
process, and prints both times, the ratio of pixels processed (tiles with their overlap) to image pixels, and
tiled / (untiled x that ratio): the goal is at most 1.2.
"""

from __future__ import annotations

import argparse
import time

import torch

from harness import create_model
from harness.backends import prepare_runner
from harness.challenge import parse_size
from harness.inference import Tiling, run_model
from harness.options import Precision
from harness.registry import model_multiple


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="flowcnrdb")
    parser.add_argument("--size", default="768x1536")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    h, w = parse_size(args.size)
    torch.manual_seed(0)
    model = create_model(args.model).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    frames = torch.rand(1, 9, h, w)
    tiling = Tiling(args.tile, args.overlap, args.batch)
    mult = model_multiple(model)
    pixels = len(tiling.spans(h, mult)) * len(tiling.spans(w, mult)) * min(args.tile, h) * min(args.tile, w)
    ratio = pixels / (h * w)
    t0 = time.perf_counter()
    forward = prepare_runner(model, "auto", torch.device("cpu"), Precision.fp32, (h, w)).prepared
    full = run_model(forward, frames, mult)
    untiled = time.perf_counter() - t0
    t0 = time.perf_counter()
    tiled_out = run_model(forward, frames, mult, tiling=tiling)
    tiled = time.perf_counter() - t0
    print(
        f"{args.model} at {h}x{w}, --tile {args.tile} --overlap {args.overlap}, {args.batch} tiles per pass, {torch.get_num_threads()} threads"
    )
    print(f"untiled {untiled:.1f} s; tiled {tiled:.1f} s; pixels processed / image pixels {ratio:.3f}")
    print(f"tiled / (untiled x pixel ratio) = {tiled / (untiled * ratio):.3f} (goal: at most 1.2)")
    print(
        f"max |tiled - untiled| = {float((tiled_out - full).abs().max()):.4g} (FlowCNRDB's windowed GRN and U-Net see beyond the overlap)"
    )


if __name__ == "__main__":
    main()
