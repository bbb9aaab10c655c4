"""The analytic cost formulas of the model families' own modules (see ``analytic.py``'s table).

Registered with :func:`harness.budget.analytic.module_cost`; torch's own layers
inside these modules are counted by their own hooks, so each formula adds only
what the module computes itself (GRN statistics, residual adds, the warp).
"""

from __future__ import annotations

from typing import Any

import torch

from harness.budget.analytic import AnalyticCount, module_cost, numel
from harness.models import demosaic, flowcnrdb


@module_cost(flowcnrdb.GRN)
def _grn(count: AnalyticCount, name: str, m: flowcnrdb.GRN, args: tuple[Any, ...], y: torch.Tensor) -> None:
    b, c, h, w = args[0].shape
    windowed = not (h <= m.window and w <= m.window)
    count.add(name, "grn", numel(args[0]) * (5 if windowed else 1))
    count.add(name, "grn", b * c * (h * w if windowed else 1) * 3)
    count.add(name, "grn", numel(args[0]) * 4)


@module_cost(flowcnrdb.FlowRegistration, flowcnrdb.HomographyRegistration)
def _warp(count: AnalyticCount, name: str, m: torch.nn.Module, args: tuple[Any, ...], flow: torch.Tensor) -> None:
    n, c, h, w = args[1].shape
    count.add(name, "grid_sample", 4 * n * (c + 1) * h * w)
    count.add(name, "warp_grid", 4 * n * h * w)
    if isinstance(m, flowcnrdb.HomographyRegistration):
        count.add(name, "warp_grid", 15 * n * h * w)  # 3x3 projective map and division per pixel


@module_cost(flowcnrdb.PixelShuffleUp)
def _shuffle(count: AnalyticCount, name: str, m: torch.nn.Module, args: tuple[Any, ...], y: torch.Tensor) -> None:
    count.add(name, "pixel_shuffle", 0)


@module_cost(flowcnrdb.ConvNeXtBlock)
def _convnext_residual(count: AnalyticCount, name: str, m: torch.nn.Module, args: tuple[Any, ...], y: torch.Tensor) -> None:
    count.add(name, "residual", numel(y))


@module_cost(flowcnrdb.CNRDB)
def _cnrdb_residual(count: AnalyticCount, name: str, m: torch.nn.Module, args: tuple[Any, ...], y: torch.Tensor) -> None:
    count.add(name, "residual", 2 * numel(y))  # scale by 0.2 and add


@module_cost(flowcnrdb.RegUNet)
def _reg_unet_silu(count: AnalyticCount, name: str, m: flowcnrdb.RegUNet, args: tuple[Any, ...], y: torch.Tensor) -> None:
    count.add(name, "activation", numel(y) // 2 * m.conv_out.in_channels)  # F.silu before conv_out


@module_cost(demosaic.BilinearDemosaic)
def _demosaic(count: AnalyticCount, name: str, m: torch.nn.Module, args: tuple[Any, ...], y: torch.Tensor) -> None:
    count.add(name, "conv", 2 * 9 * numel(y))  # sample and weight convolutions, 3x3 per channel
    count.add(name, "residual", 3 * numel(y))  # mask, divide, exposure
