"""Training iterations per second at the published crop and batch (run by hand).

    python benchmarks/train_speed.py [--crop 256] [--batch 10] [--iters 3] [--models flowcnrdb_tiny,flowcnrdb]
                                     [--micro-batch N] [--warmup 1]

Times full optimiser steps (forward, MSE, backward, AdamW) on random inputs,
after warm-up steps. ``--micro-batch`` accumulates the gradient of the batch in
pieces (the same step, less memory): FlowCNRDB at batch 10 x 256^2 needs more
than 24 GB on the CPU in one piece, so use ``--micro-batch 2`` there.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from harness import create_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--models", default="flowcnrdb_tiny,flowcnrdb")
    parser.add_argument("--micro-batch", type=int, default=0, help="accumulate the batch in pieces of this size")
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    micro = args.micro_batch or args.batch
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = create_model(name).train()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
        x = torch.randn(args.batch, 9, args.crop, args.crop)
        y = torch.rand(args.batch, 3, args.crop, args.crop)
        times = []
        for i in range(args.warmup + args.iters):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            for start in range(0, args.batch, micro):
                xs, ys = x[start : start + micro], y[start : start + micro]
                (F.mse_loss(model(xs), ys) * (len(xs) / args.batch)).backward()
            opt.step()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
        mean = sum(times) / len(times)
        print(
            f"{name:16s} batch {args.batch} (pieces of {micro}) x {args.crop}^2: {mean:.2f} s/iteration, {1 / mean:.4f} it/s",
            flush=True,
        )


if __name__ == "__main__":
    main()
