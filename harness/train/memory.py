"""How much memory training a model takes, estimated before it starts, and how much the machine has.

The estimate runs the model once on the meta device (no memory, no arithmetic) on a batch of crops and adds
up the bytes of every tensor autograd keeps for the backward pass (its saved-tensor hooks see each one; a
view counts as its base, once), times ``BACKWARD_MARGIN`` for what the backward pass allocates on top, plus
four copies of the weights (weights, gradients, AdamW's two moments). Under float16 autocast the kept
activations are counted at two bytes a value. Measured against it: FlowCNRDB at batch 2 of 128x128 crops
grew the CPU's peak resident memory by 4.40 GiB (estimate 5.3 GiB), its tiny variant at batch 4 by 1.96 GiB
(2.1 GiB), and FlowCNRDB at batch 10 of 224x224 with autocast on an H200 peaked at 37.5 GiB in
``nvidia-smi``, the CUDA context and the caching allocator's reserve included (estimate 38.5 GiB). It errs a
little high, which is what a warning needs.
"""

from __future__ import annotations

import copy
import os

import torch
from torch import nn

from harness.challenge import NUM_FRAMES

BACKWARD_MARGIN = 1.3  # peak training memory was 1.15-1.27x the tensors autograd keeps, in the runs above


def training_memory(model: nn.Module, batch: int, crop: int, half: bool = False) -> int:
    """Bytes to train ``model`` on ``batch`` crops of ``crop`` x ``crop`` (a slightly high estimate); ``half``:
    under float16 autocast."""
    meta = copy.deepcopy(model).to("meta").train()
    weights = {id(p) for p in meta.parameters()}
    kept: dict[int, torch.Tensor] = {}  # held, so no id is reused while counting

    def keep(t: torch.Tensor) -> torch.Tensor:
        base = t if t._base is None else t._base
        if id(base) not in weights:
            kept[id(base)] = base
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        meta(torch.empty(batch, NUM_FRAMES, crop, crop, device="meta"))
    activations = sum(t.numel() * (2 if half and t.is_floating_point() else t.element_size()) for t in kept.values())
    return int(BACKWARD_MARGIN * activations) + 4 * sum(p.numel() * p.element_size() for p in model.parameters())


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
