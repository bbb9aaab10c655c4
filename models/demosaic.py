"""A parameter-free reference: bilinear demosaicking of the reference frame.

Takes frame 0 of the burst (GRBG Bayer: row 0 G R G R ..., row 1 B G B G ...),
fills the missing colours of every site by bilinear interpolation and divides
by the frame's exposure ratio, so the result is on the ground truth's scale.
No alignment, no fusion, no denoising: what any learned model must beat.

This file imports only torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DemosaicConfig", "BilinearDemosaic", "grbg_masks", "bilinear_demosaic"]


@dataclass
class DemosaicConfig:
    exposure: float = 1.0  # exposure ratio of frame 0 (the synthetic data's dataset.json has it)
    frame: int = 0

    @property
    def multiple(self) -> int:
        return 2


def grbg_masks(h: int, w: int, device: torch.device | None = None) -> Tensor:
    """(3, h, w) 0/1 masks of the sites holding R, G and B in a GRBG mosaic."""
    ys = torch.arange(h, device=device).view(-1, 1) % 2
    xs = torch.arange(w, device=device).view(1, -1) % 2
    r = (ys == 0) & (xs == 1)
    b = (ys == 1) & (xs == 0)
    g = ~(r | b)
    return torch.stack([r, g, b]).float()


def bilinear_demosaic(mosaic: Tensor) -> Tensor:
    """(B, 1, H, W) GRBG mosaic -> (B, 3, H, W) RGB by normalised bilinear interpolation."""
    _, _, h, w = mosaic.shape
    masks = grbg_masks(h, w, mosaic.device).to(mosaic.dtype).unsqueeze(0)
    kernel = torch.tensor(
        [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]], dtype=mosaic.dtype, device=mosaic.device
    )
    kernel = kernel.expand(3, 1, 3, 3)
    sampled = F.conv2d(F.pad(mosaic * masks, (1, 1, 1, 1), mode="reflect"), kernel, groups=3)
    weight = F.conv2d(F.pad(masks.expand_as(sampled), (1, 1, 1, 1), mode="reflect"), kernel, groups=3)
    return sampled / weight


class BilinearDemosaic(nn.Module):
    """Frame ``config.frame`` demosaiced bilinearly and divided by ``config.exposure``."""

    def __init__(self, config: DemosaicConfig | None = None, **overrides: object) -> None:
        super().__init__()
        if config is not None and overrides:
            raise TypeError("pass a config or keyword arguments, not both")
        self.config = config or DemosaicConfig(**overrides)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        frame = x[:, self.config.frame : self.config.frame + 1]
        return bilinear_demosaic(frame) / self.config.exposure
