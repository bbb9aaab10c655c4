"""An analytic MAC counter: per-layer formulas from module shapes.

The model runs once on the meta device (no memory, no arithmetic) with forward
hooks that read each layer's input and output shapes. Cost model, in MACs
(one fused multiply-add = 1; any other arithmetic operation = 1):

==================  =========================================================
category            cost
==================  =========================================================
conv                output elements x (C_in / groups) x k_h x k_w (explicit padding)
conv_same           the same, for convolutions built with ``padding="same"``
conv_transpose      input elements x (C_out / groups) x k_h x k_w
linear              output elements x in_features
bias                1 per output element of a layer with a bias
layer_norm          5 per element (mean, variance, subtract, divide, affine)
grn                 global: 1 per element (square-accumulate); windowed: 5 per
                    element (square, two cumulative sums, two differences);
                    then 3 per norm element (sqrt, channel mean, divide) and
                    4 per element (x*N, *gamma, +beta, +x)
grid_sample         4 per sampled output element (bilinear: 4 taps), features
                    and validity mask
warp_grid           4 per latent pixel (subtract the flow, normalise x and y)
activation          1 per element (SiLU, ReLU)
residual            1 per element per residual add or scale
pool                k_h x k_w - 1 comparisons per output element
pixel_shuffle       0 (pure data movement; listed so that nobody wonders)
==================  =========================================================
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from math import prod
from typing import Any

import torch
from torch import nn

from harness.models import demosaic, flowcnrdb

CATEGORIES = (
    "conv", "conv_same", "conv_transpose", "linear", "bias", "layer_norm", "grn", "grid_sample",
    "warp_grid", "activation", "residual", "pool", "pixel_shuffle",
)


@dataclass
class AnalyticCount:
    by_category: Counter[str] = field(default_factory=Counter)
    by_module: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    same_padding_convs: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return int(sum(self.by_category.values()))

    def add(self, module: str, category: str, macs: int) -> None:
        self.by_category[category] += int(macs)
        self.by_module[module][category] += int(macs)


def _numel(t: Any) -> int:
    return prod(t.shape) if isinstance(t, torch.Tensor) else 0


def _conv(count: AnalyticCount, name: str, m: nn.Conv2d, x: torch.Tensor, y: torch.Tensor) -> None:
    per_out = (m.in_channels // m.groups) * prod(m.kernel_size)
    same = m.padding == "same"
    count.add(name, "conv_same" if same else "conv", _numel(y) * per_out)
    if same and name not in count.same_padding_convs:
        count.same_padding_convs.append(name)
    if m.bias is not None:
        count.add(name, "bias", _numel(y))


def _conv_t(count: AnalyticCount, name: str, m: nn.ConvTranspose2d, x: torch.Tensor, y: torch.Tensor) -> None:
    count.add(name, "conv_transpose", _numel(x) * (m.out_channels // m.groups) * prod(m.kernel_size))
    if m.bias is not None:
        count.add(name, "bias", _numel(y))


def _grn(count: AnalyticCount, name: str, m: flowcnrdb.GRN, x: torch.Tensor, y: torch.Tensor) -> None:
    b, c, h, w = x.shape
    windowed = not (h <= m.window and w <= m.window)
    count.add(name, "grn", _numel(x) * (5 if windowed else 1))
    count.add(name, "grn", b * c * (h * w if windowed else 1) * 3)
    count.add(name, "grn", _numel(x) * 4)


def _warp(count: AnalyticCount, name: str, m: nn.Module, args: tuple[Any, ...], flow: torch.Tensor) -> None:
    z = args[1]
    n, c, h, w = z.shape
    count.add(name, "grid_sample", 4 * n * (c + 1) * h * w)
    count.add(name, "warp_grid", 4 * n * h * w)
    if isinstance(m, flowcnrdb.HomographyRegistration):
        count.add(name, "warp_grid", 15 * n * h * w)  # 3x3 projective map and division per pixel


def _hook(count: AnalyticCount, name: str, m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
    x = args[0] if args else None
    if isinstance(m, nn.Conv2d):
        _conv(count, name, m, x, out)
    elif isinstance(m, nn.ConvTranspose2d):
        _conv_t(count, name, m, x, out)
    elif isinstance(m, nn.Linear):
        count.add(name, "linear", _numel(out) * m.in_features)
        if m.bias is not None:
            count.add(name, "bias", _numel(out))
    elif isinstance(m, nn.LayerNorm):
        count.add(name, "layer_norm", 5 * _numel(out))
    elif isinstance(m, flowcnrdb.GRN):
        _grn(count, name, m, x, out)
    elif isinstance(m, (nn.SiLU, nn.ReLU)):
        count.add(name, "activation", _numel(out))
    elif isinstance(m, nn.MaxPool2d):
        k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size, m.kernel_size)
        count.add(name, "pool", _numel(out) * (prod(k) - 1))
    elif isinstance(m, (nn.PixelShuffle, flowcnrdb.PixelShuffleUp)):
        count.add(name, "pixel_shuffle", 0)
    elif isinstance(m, flowcnrdb.ConvNeXtBlock):
        count.add(name, "residual", _numel(out))
    elif isinstance(m, flowcnrdb.CNRDB):
        count.add(name, "residual", 2 * _numel(out))
    elif isinstance(m, flowcnrdb.RegUNet):
        count.add(name, "activation", _numel(out) // 2 * m.conv_out.in_channels)  # F.silu before conv_out
    elif isinstance(m, (flowcnrdb.FlowRegistration, flowcnrdb.HomographyRegistration)):
        _warp(count, name, m, args, out)
    elif isinstance(m, demosaic.BilinearDemosaic):
        count.add(name, "conv", 2 * 9 * _numel(out))  # sample and weight convolutions, 3x3 per channel
        count.add(name, "residual", 3 * _numel(out))  # mask, divide, exposure


def analytic_count(model: nn.Module, input_shape: tuple[int, ...]) -> AnalyticCount:
    """Count ``model`` at ``input_shape`` on the meta device (the model is not changed)."""
    from harness.budget.counters import counting_copy

    meta = counting_copy(model, "meta")
    count = AnalyticCount()
    handles = []
    for name, module in meta.named_modules():
        handles.append(module.register_forward_hook(lambda m, a, o, name=name: _hook(count, name, m, a, o)))
    try:
        with torch.no_grad():
            meta(torch.empty(input_shape, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return count

