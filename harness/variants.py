"""Registered model variants: one short function each, overrides win.

The only module that names registered models; everything else reads the
registry.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from harness.data.synth import frame0_exposure
from harness.model_registry import WeightsInfo, register_model
from harness.models.demosaic import BilinearDemosaic, DemosaicConfig
from harness.models.flowcnrdb import FlowCNRDB, FlowCNRDBConfig
from harness.models.unet_baseline import UNetBaseline, UNetBaselineConfig

TINY_WEIGHTS = WeightsInfo(
    file="flowcnrdb_tiny.safetensors",
    sha256="5860daa43b261c143557929b94ecf653b78a53f50683111bd71a1ca95c7cb63b",
    trained=(
        "harness train --model flowcnrdb_tiny --out runs/tiny --iters 2500 --crop 64 --batch 6 --lr 1e-3 "
        "--val-every 250 --log-every 25 --workers 1 (embedded dataset, seed 0, best validation checkpoint)"
    ),
)

_flowcnrdb_family = partial(
    register_model,
    "flowcnrdb",
    model_class=FlowCNRDB,
    config_class=FlowCNRDBConfig,
    weights_hint="e.g. --weights Ckpt_01_FlowCNRDB.pth, the published checkpoint",
)


def _create_flowcnrdb(**kwargs: Any) -> FlowCNRDB:
    return FlowCNRDB(FlowCNRDBConfig(**kwargs))


@_flowcnrdb_family(
    "FlowCNRDB as published: flow alignment U-Net + 14 CNRDB fusion blocks", "stem 32x5, reg 32..512, merge 64/32 x14"
)
def flowcnrdb(**kwargs: Any) -> nn.Module:
    return _create_flowcnrdb(**kwargs)


@_flowcnrdb_family(
    "About half the compute: stem depth 3, reg widths 24..384, merge depth 6", "stem 32x3, reg 24..384, merge 64/32 x6"
)
def flowcnrdb_small(**kwargs: Any) -> nn.Module:
    args: dict[str, Any] = dict(stem_depth=3, reg_widths=(24, 48, 96, 192, 384), merge_depth=6)
    return _create_flowcnrdb(**{**args, **kwargs})


TINY_ARGS: dict[str, Any] = dict(
    train_size=64,
    stem_width=16,
    stem_depth=2,
    reg_widths=(16, 32, 48, 64, 96),
    reg_depths=(1, 1, 1, 1, 1),
    merge_base_channels=32,
    merge_grow_channels=16,
    merge_depth=3,
    merge_features=16,
)


@_flowcnrdb_family(
    "Under 1 M parameters, for tests and CPU demos (bundled weights)",
    "stem 16x2, reg 16..96, merge 32/16 x3, train 64",
    TINY_WEIGHTS,
)
def flowcnrdb_tiny(**kwargs: Any) -> nn.Module:
    return _create_flowcnrdb(**{**TINY_ARGS, **kwargs})


@_flowcnrdb_family("Ablation: the warp validity mask is not passed to the fusion stage", "append_mask=False")
def flowcnrdb_nomask(**kwargs: Any) -> nn.Module:
    return _create_flowcnrdb(**{"append_mask": False, **kwargs})


@_flowcnrdb_family("Ablation: no stage 2; features passed unwarped with masks of ones", "align=none")
def flowcnrdb_noalign(**kwargs: Any) -> nn.Module:
    return _create_flowcnrdb(**{"align": "none", **kwargs})


@_flowcnrdb_family(
    "Stage 2 predicts one homography per frame from a pooled head (sparse alignment)", "align=homography"
)
def flowcnrdb_homography(**kwargs: Any) -> nn.Module:
    return _create_flowcnrdb(**{"align": "homography", **kwargs})


@register_model(
    "unet",
    "The challenge starter kit's U-Net baseline (31.01 dB validation)",
    "depth 4, width 64",
    model_class=UNetBaseline,
    config_class=UNetBaselineConfig,
)
def unet_baseline(**kwargs: Any) -> nn.Module:
    return UNetBaseline(UNetBaselineConfig(**kwargs))


def _demosaic_data_args(data: Path) -> dict[str, Any]:
    """Frame 0's exposure ratio, from a synthetic folder's dataset.json (absent elsewhere)."""
    return {"exposure": frame0_exposure(data)}


@register_model(
    "demosaic",
    "Parameter-free: frame 0, bilinear demosaic, divided by its exposure ratio",
    "exposure from dataset.json",
    data_args=_demosaic_data_args,
)
def demosaic(**kwargs: Any) -> nn.Module:
    return BilinearDemosaic(DemosaicConfig(**kwargs))
