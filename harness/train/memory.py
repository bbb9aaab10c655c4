"""How much memory training a model takes, estimated before it starts, and how much the machine has.

The estimate runs the model once on the meta device (no memory, no arithmetic) on a batch of crops and adds
up the bytes of every tensor an operator produces: in training, autograd keeps most of them for the
backward pass, which needs about as much again; parameters, gradients and AdamW's two moments add four
copies of the weights. It errs high, which is what a warning needs.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from harness.challenge import NUM_FRAMES

BACKWARD_FACTOR = 2  # the backward pass needs about as much again as the activations it keeps


class _Bytes(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.total += t.numel() * t.element_size()
        return out


def training_memory(model: nn.Module, batch: int, crop: int) -> int:
    """Bytes to train ``model`` on ``batch`` crops of ``crop`` x ``crop`` (an upper estimate)."""
    import copy

    meta = copy.deepcopy(model).to("meta").train()
    counter = _Bytes()
    with counter:
        meta(torch.empty(batch, NUM_FRAMES, crop, crop, device="meta"))
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return BACKWARD_FACTOR * counter.total + 4 * weights


def available_memory(device: torch.device) -> int:
    """Free memory on ``device`` in bytes (the GPU's free memory; on the CPU, MemAvailable of /proc/meminfo)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
