"""Training iterations per second at the published crop and batch (run by hand).

    python benchmarks/train_speed.py [--crop 256] [--batch 10] [--iters 3] [--models flowcnrdb_tiny,flowcnrdb]

Times full optimiser steps (forward, MSE, backward, AdamW) on random inputs,
after one warm-up step.
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
    args = parser.parse_args()
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = create_model(name).train()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
        x = torch.randn(args.batch, 9, args.crop, args.crop)
        y = torch.rand(args.batch, 3, args.crop, args.crop)
        times = []
        for i in range(args.iters + 1):
            t0 = time.perf_counter()
            loss = F.mse_loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i:
                times.append(time.perf_counter() - t0)
        mean = sum(times) / len(times)
        print(f"{name:16s} batch {args.batch} x {args.crop}^2: {mean:.2f} s/iteration, {1 / mean:.3f} it/s")


if __name__ == "__main__":
    main()
