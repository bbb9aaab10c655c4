"""The challenge starter kit's U-Net baseline (7,700,931 parameters).

A plain encoder-decoder over the nine stacked Bayer frames: four levels of two
3x3 convolutions with ReLU (64 filters at the first level, doubling per level),
2x2 max pooling down, 2x2 transposed convolutions up, skips concatenated,
``Dropout2d(0.15)`` after the second convolution of every level and a final
1x1 convolution to RGB. No normalisation. Input (B, 9, H, W) with H and W
multiples of 8; output (B, 3, H, W). Validation PSNR 31.01 dB.

This file imports only torch; state-dict names follow the published weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["UNetBaselineConfig", "UNetBaseline"]


@dataclass
class UNetBaselineConfig:
    in_channels: int = 9
    out_channels: int = 3
    depth: int = 4
    width: int = 64
    dropout: float = 0.15

    @property
    def multiple(self) -> int:
        """H and W of the input must be multiples of this."""
        return 2 ** (self.depth - 1)


class ConvBlock(nn.Module):
    """conv3x3, ReLU, conv3x3, ReLU, Dropout2d (indices 0..4)."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class UpBlock(nn.Module):
    """2x2 transposed conv up, concat with the skip, ConvBlock."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv_block = ConvBlock(2 * out_ch, out_ch, dropout)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv_block(torch.cat([self.up(x), skip], dim=1))


class UNetBaseline(nn.Module):
    """The starter-kit U-Net. Args: config (defaults: the published baseline), or its fields as keywords."""

    def __init__(self, config: UNetBaselineConfig | None = None, **overrides: object) -> None:
        super().__init__()
        if config is not None and overrides:
            raise TypeError("pass a config or keyword arguments, not both")
        cfg = config or UNetBaselineConfig(**overrides)  # type: ignore[arg-type]
        self.config = cfg
        widths = [cfg.width * 2**i for i in range(cfg.depth)]
        self.down_path = nn.ModuleList(
            ConvBlock(cfg.in_channels if i == 0 else widths[i - 1], widths[i], cfg.dropout) for i in range(cfg.depth)
        )
        self.up_path = nn.ModuleList(
            UpBlock(widths[i + 1], widths[i], cfg.dropout) for i in reversed(range(cfg.depth - 1))
        )
        self.pool = nn.MaxPool2d(2)
        self.last = nn.Conv2d(widths[0], cfg.out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for i, down in enumerate(self.down_path):
            x = down(x)
            if i < len(self.down_path) - 1:
                skips.append(x)
                x = self.pool(x)
        for up in self.up_path:
            x = up(x, skips.pop())
        return self.last(x)
