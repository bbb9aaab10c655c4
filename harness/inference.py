"""Running a model over one burst: device, AMP, full image or blended tiles."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from harness.errors import HarnessError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise HarnessError("--device cuda: no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise HarnessError(f"--device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def model_multiple(model: nn.Module) -> int:
    cfg = getattr(model, "config", None)
    return int(getattr(cfg, "multiple", 1))


@dataclass(frozen=True)
class Tiling:
    """Tiles of ``tile`` x ``tile`` pixels overlapping by ``overlap``; ``tile=0`` is the full image."""

    tile: int = 0
    overlap: int = 0

    def check(self, multiple: int) -> None:
        if self.tile and (self.tile % multiple or self.tile <= 0):
            raise HarnessError(f"--tile must be a positive multiple of {multiple}, got {self.tile}")
        if self.overlap < 0 or (self.tile and self.overlap >= self.tile):
            raise HarnessError(f"--overlap must be in [0, tile), got {self.overlap}")

    def starts(self, size: int, multiple: int) -> list[int]:
        if size <= self.tile:
            return [0]
        step = max(multiple, (self.tile - self.overlap) // multiple * multiple)
        starts = list(range(0, size - self.tile, step)) + [size - self.tile]
        return sorted(set(starts))


def _ramp(n: int, overlap: int) -> torch.Tensor:
    """1-D blending weights: linear ramps of ``overlap`` pixels at both ends."""
    w = torch.ones(n, dtype=torch.float32)
    if overlap > 0:
        r = (torch.arange(overlap, dtype=torch.float32) + 1) / (overlap + 1)
        w[:overlap] = r
        w[-overlap:] = torch.minimum(w[-overlap:], r.flip(0))
    return w


def _forward(model: nn.Module, x: torch.Tensor, device: torch.device, amp: bool) -> torch.Tensor:
    x = x.to(device)
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        out = model(x)
    return out.float().cpu()


def run_model(
    model: nn.Module, frames: torch.Tensor, device: torch.device, amp: bool = False, tiling: Tiling = Tiling()
) -> torch.Tensor:
    """(1, 9, H, W) frames -> (3, H, W) float32 output on the CPU."""
    if not tiling.tile:
        return _forward(model, frames, device, amp)[0]
    mult = model_multiple(model)
    _, _, h, w = frames.shape
    th, tw = min(tiling.tile, h), min(tiling.tile, w)
    acc = torch.zeros(3, h, w)
    weight = torch.zeros(1, h, w)
    for y in Tiling(th, tiling.overlap).starts(h, mult):
        for x in Tiling(tw, tiling.overlap).starts(w, mult):
            out = _forward(model, frames[:, :, y : y + th, x : x + tw], device, amp)[0]
            wy = _ramp(th, tiling.overlap if th < h else 0)
            wx = _ramp(tw, tiling.overlap if tw < w else 0)
            wt = (wy[:, None] * wx[None, :])[None]
            acc[:, y : y + th, x : x + tw] += out * wt
            weight[:, y : y + th, x : x + tw] += wt
    return acc / weight


def to_hwc(out: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor -> (H, W, 3) float32 array."""
    return np.ascontiguousarray(out.permute(1, 2, 0).numpy())
