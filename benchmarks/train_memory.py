"""The training-memory estimate against a measurement on the CPU (run by hand).

    python benchmarks/train_memory.py [--model flowcnrdb] [--batch 2] [--crop 128] [--steps 2]

Prints ``harness.train.memory.training_memory`` for the configuration, then trains it for a few AdamW steps
(float32, random data) and prints how much the process's peak resident memory grew. The estimate should be a
little higher. For the GPU, ``benchmarks/train_gpu.sh`` reports the peak ``nvidia-smi`` saw.
"""

from __future__ import annotations

import argparse
import gc
import resource

import torch
import torch.nn.functional as F

from harness import create_model
from harness.challenge import NUM_FRAMES
from harness.train.memory import training_memory


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flowcnrdb")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    model = create_model(args.model).train()
    estimate = training_memory(model, args.batch, args.crop)
    opt = torch.optim.AdamW(model.parameters())
    x, y = torch.randn(args.batch, NUM_FRAMES, args.crop, args.crop), torch.rand(args.batch, 3, args.crop, args.crop)
    gc.collect()
    before = peak_rss()
    for _ in range(args.steps):
        opt.zero_grad(set_to_none=True)
        F.mse_loss(model(x), y).backward()
        opt.step()
    grown = peak_rss() - before
    print(
        f"{args.model}, batch {args.batch} of {args.crop}x{args.crop}: estimate {estimate / 2**30:.2f} GiB, "
        f"peak resident memory grew {grown / 2**30:.2f} GiB ({estimate / grown:.2f}x)"
    )


if __name__ == "__main__":
    main()
