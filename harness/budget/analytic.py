"""An analytic MAC counter: per-layer formulas from module shapes.

The model runs once on the meta device (no memory, no arithmetic) with forward
hooks that read each layer's input and output shapes. This module holds the
formulas of torch's own layers; the formulas of a model family's own modules
are registered with :func:`module_cost` (see ``family_costs.py``). Cost model, in MACs
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
from typing import Any, Callable

import torch
from torch import nn

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


CostFn = Callable[[AnalyticCount, str, Any, tuple[Any, ...], Any], None]
"""``cost(count, module name, module, forward args, output)`` adds the module's own MACs."""

_MODULE_COSTS: dict[type, CostFn] = {}


def module_cost(*types: type) -> Callable[[CostFn], CostFn]:
    """Register the decorated function as the cost formula of modules of ``types``."""

    def wrap(fn: CostFn) -> CostFn:
        for t in types:
            _MODULE_COSTS[t] = fn
        return fn

    return wrap


def numel(t: Any) -> int:
    return prod(t.shape) if isinstance(t, torch.Tensor) else 0


@module_cost(nn.Conv2d)
def _conv(count: AnalyticCount, name: str, m: nn.Conv2d, args: tuple[Any, ...], y: torch.Tensor) -> None:
    per_out = (m.in_channels // m.groups) * prod(m.kernel_size)
    same = m.padding == "same"
    count.add(name, "conv_same" if same else "conv", numel(y) * per_out)
    if same and name not in count.same_padding_convs:
        count.same_padding_convs.append(name)
    if m.bias is not None:
        count.add(name, "bias", numel(y))


@module_cost(nn.ConvTranspose2d)
def _conv_t(count: AnalyticCount, name: str, m: nn.ConvTranspose2d, args: tuple[Any, ...], y: torch.Tensor) -> None:
    count.add(name, "conv_transpose", numel(args[0]) * (m.out_channels // m.groups) * prod(m.kernel_size))
    if m.bias is not None:
        count.add(name, "bias", numel(y))


@module_cost(nn.Linear)
def _linear(count: AnalyticCount, name: str, m: nn.Linear, args: tuple[Any, ...], y: torch.Tensor) -> None:
    count.add(name, "linear", numel(y) * m.in_features)
    if m.bias is not None:
        count.add(name, "bias", numel(y))


@module_cost(nn.LayerNorm)
def _layer_norm(count: AnalyticCount, name: str, m: nn.Module, args: tuple[Any, ...], y: torch.Tensor) -> None:
    count.add(name, "layer_norm", 5 * numel(y))


@module_cost(nn.SiLU, nn.ReLU)
def _activation(count: AnalyticCount, name: str, m: nn.Module, args: tuple[Any, ...], y: torch.Tensor) -> None:
    count.add(name, "activation", numel(y))


@module_cost(nn.MaxPool2d)
def _pool(count: AnalyticCount, name: str, m: nn.MaxPool2d, args: tuple[Any, ...], y: torch.Tensor) -> None:
    k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size, m.kernel_size)
    count.add(name, "pool", numel(y) * (prod(k) - 1))


@module_cost(nn.PixelShuffle)
def _data_movement(count: AnalyticCount, name: str, m: nn.Module, args: tuple[Any, ...], y: torch.Tensor) -> None:
    count.add(name, "pixel_shuffle", 0)


def _hook(count: AnalyticCount, name: str, m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
    for cls in type(m).__mro__:
        if cls in _MODULE_COSTS:
            _MODULE_COSTS[cls](count, name, m, args, out)
            return


def analytic_count(model: nn.Module, input_shape: tuple[int, ...]) -> AnalyticCount:
    """Count ``model`` at ``input_shape`` on the meta device (the model is not changed)."""
    from harness.budget import family_costs  # noqa: F401  (registers the model families' formulas)
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
