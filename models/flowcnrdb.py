"""FlowCNRDB: burst HDR fusion and restoration with flow alignment and CNRDB fusion.

The NTIRE 2025 Efficient Burst HDR and Restoration entry of team 01
(SimonLarsen), 18,651,029 parameters, 41.38 dB test PSNR. The network maps the
nine GRBG Bayer frames of a burst, (B, 9, H, W) with H and W multiples of 32,
to an RGB image (B, 3, H, W), unclamped. It works in three stages:

1. Feature extraction, shared by every frame: a 2x2 stride-2 patch conv and a
   stack of ConvNeXt blocks turn each frame into a half-resolution latent Z.
2. Alignment: a ConvNeXt U-Net reads concat(Z_ref, Z_i) and predicts a dense
   flow F_i; Z_i is warped with bilinear ``grid_sample`` at p - F_i(p), and the
   same warp of a tensor of ones gives the validity mask M_i. The reference
   frame 0 goes through the same path against itself.
3. Fusion and restoration: concat(warped Z_i, M_i) over all frames, a 1x1
   projection, a chain of CNRDB blocks (residual dense blocks whose layers are
   ConvNeXt blocks) and a pixel-shuffle head back to full resolution.

Every ConvNeXt block ends in a GRN (global response normalisation) that
aggregates over windows at test time: a feature map no larger than the training
latent is normalised globally; a larger one over sliding windows of the
training latent's size, so a full image sees the statistics the training crops
saw. ``forward(x, return_intermediates=True)`` returns the intermediates
(``stem_features``, ``flow``, ``mask``, ``warped_features``) beside the output.

This file imports only torch and changes no process state: it is exactly the
file that goes into a code submission, and what FLOP counters and exporters
see. State-dict names follow the published checkpoint. Faster ways to compute
the same function live in ``harness.backends``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GRN", "ConvNeXtBlock", "FlowCNRDB", "FlowCNRDBConfig", "flow_warp", "homography_flow"]


@dataclass
class FlowCNRDBConfig:
    """Architecture arguments; the defaults are the published values (Table 1).

    ``align`` chooses stage 2: ``"flow"`` (the published dense flow),
    ``"none"`` (features passed unwarped, masks of ones) or ``"homography"``
    (one 8-parameter homography per frame from a pooled head). The dropout
    rates act only in training.
    """

    train_size: int = 256
    num_brackets: int = 9
    stem_width: int = 32
    stem_depth: int = 5
    stem_kernel_size: int = 5
    stem_expand_ratio: float = 2.5
    reg_widths: Sequence[int] = (32, 64, 128, 256, 512)
    reg_depths: Sequence[int] = (2, 3, 4, 5, 6)
    reg_kernel_size: int = 7
    reg_expand_ratio: float = 2.5
    merge_base_channels: int = 64
    merge_grow_channels: int = 32
    merge_expand_ratio: float = 2.0
    merge_kernel_size: int = 7
    merge_depth: int = 14
    merge_features: int = 32
    append_mask: bool = True
    align: str = "flow"
    stem_drop: float = 0.05
    reg_drop: float = 0.1
    merge_drop: float = 0.1

    def __post_init__(self) -> None:
        self.reg_widths = tuple(int(w) for w in self.reg_widths)
        self.reg_depths = tuple(int(d) for d in self.reg_depths)
        if len(self.reg_widths) != len(self.reg_depths):
            raise ValueError("reg_widths and reg_depths must have the same length")
        if self.align not in ("flow", "none", "homography"):
            raise ValueError(f"align must be 'flow', 'none' or 'homography', not {self.align!r}")

    @property
    def multiple(self) -> int:
        """H and W of the input must be multiples of this."""
        return 2 ** len(self.reg_widths)


# --------------------------------------------------------------------------- blocks


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension at every pixel of a (B, C, H, W) map."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def box_sum(x: Tensor, k1: int, k2: int) -> Tensor:
    """Sum of ``x`` over every k1 x k2 window fully inside the map ('valid').

    Separable cumulative sums: (B, C, h, w) -> (B, C, h - k1 + 1, w - k2 + 1).
    """
    c = F.pad(x.cumsum(dim=2), (0, 0, 1, 0))
    x = c[:, :, k1:] - c[:, :, :-k1]
    c = F.pad(x.cumsum(dim=3), (1, 0))
    return c[:, :, :, k2:] - c[:, :, :, :-k2]


class GRN(nn.Module):
    """Global response normalisation with test-time local aggregation.

    A map of at most ``window`` x ``window`` is normalised by the L2 norm over
    its whole extent; a larger one by the L2 norm over the k1 x k2 window
    (k1 = min(h, window), k2 = min(w, window)) around each pixel, computed as a
    valid box sum and padded back to (h, w) by replicating the edges.
    """

    def __init__(self, channels: int, window: int) -> None:
        super().__init__()
        self.window = int(window)
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def norms(self, x: Tensor) -> Tensor:
        """G: the L2 norm of ``x`` per channel, globally or over local windows."""
        h, w = x.shape[-2:]
        s = self.window
        if h <= s and w <= s:
            return torch.linalg.vector_norm(x, dim=(2, 3), keepdim=True)
        k1, k2 = min(h, s), min(w, s)
        g = box_sum(x * x, k1, k2).clamp_min_(0).sqrt_()
        oh, ow = g.shape[-2:]
        pad = ((w - ow) // 2, (w - ow + 1) // 2, (h - oh) // 2, (h - oh + 1) // 2)
        return F.pad(g, pad, mode="replicate")

    def forward(self, x: Tensor) -> Tensor:
        g = self.norms(x)
        n = g / (g.mean(dim=1, keepdim=True) + 1e-6)
        return self.gamma * (x * n) + self.beta + x


class ConvNeXtBlock(nn.Module):
    """CN(C, k, r, s): depth-wise conv, LayerNorm, 1x1 expand, SiLU, GRN, 1x1 project.

    ``block`` keeps the published indices: 0 depth-wise conv (``same``, no
    bias), 1 LayerNorm, 2 expand, 3 SiLU, 4 identity (parameter-free slot of the
    published layout), 5 GRN, 6 project, 7 dropout. Output = x + block(x).
    """

    def __init__(self, channels: int, kernel_size: int, expand_ratio: float, window: int, drop: float = 0.0) -> None:
        super().__init__()
        hidden = round(channels * expand_ratio)
        project = nn.Conv2d(hidden, channels, 1)
        nn.init.zeros_(project.weight)
        nn.init.zeros_(project.bias)  # type: ignore[arg-type]  # Conv2d's bias is a Parameter here
        self.block = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size, padding="same", groups=channels, bias=False),
            LayerNorm2d(channels),
            nn.Conv2d(channels, hidden, 1),
            nn.SiLU(),
            nn.Identity(),
            GRN(hidden, window),
            project,
            nn.Dropout(drop),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


# --------------------------------------------------------------------------- stage 1


class Stem(nn.Module):
    """Stage 1: 2x2 stride-2 patch conv (1 -> width) and ``depth`` ConvNeXt blocks."""

    def __init__(self, width: int, depth: int, kernel_size: int, expand_ratio: float, window: int, drop: float) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, width, 2, stride=2)
        self.blocks = nn.Sequential(
            *[ConvNeXtBlock(width, kernel_size, expand_ratio, window, drop) for _ in range(depth)]
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.patch(x))


# --------------------------------------------------------------------------- stage 2


class DownLevel(nn.Module):
    def __init__(
        self, in_ch: int, width: int, depth: int, kernel_size: int, expand_ratio: float, window: int, drop: float
    ) -> None:
        super().__init__()
        self.proj_in = nn.Conv2d(in_ch, width, 2, stride=2) if in_ch else None
        self.blocks = nn.Sequential(
            *[ConvNeXtBlock(width, kernel_size, expand_ratio, window, drop) for _ in range(depth)]
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.proj_in is not None:
            x = self.proj_in(x)
        return self.blocks(x)


class PixelShuffleUp(nn.Module):
    """1x1 conv to 4x the output channels, then pixel shuffle x2."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_ch, 4 * out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(self.proj(x), 2)


class UpLevel(nn.Module):
    def __init__(
        self, in_ch: int, width: int, depth: int, kernel_size: int, expand_ratio: float, window: int, drop: float
    ) -> None:
        super().__init__()
        self.upsample = PixelShuffleUp(in_ch, width)
        self.skip_conv = nn.Conv2d(2 * width, width, 3, padding=1)
        self.blocks = nn.Sequential(
            *[ConvNeXtBlock(width, kernel_size, expand_ratio, window, drop) for _ in range(depth)]
        )

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.skip_conv(torch.cat([self.upsample(x), skip], dim=1))
        return self.blocks(x)


class RegUNet(nn.Module):
    """Stage 2 U-Net: concat(Z_ref, Z_i) -> dense flow (2 channels: x, y)."""

    def __init__(self, cfg: FlowCNRDBConfig) -> None:
        super().__init__()
        widths, depths = cfg.reg_widths, cfg.reg_depths
        k, r, drop = cfg.reg_kernel_size, cfg.reg_expand_ratio, cfg.reg_drop
        windows = [(cfg.train_size // 2) >> level for level in range(len(widths))]
        self.conv_in = nn.Conv2d(2 * cfg.stem_width, widths[0], 3, padding="same")
        self.down = nn.ModuleList(
            DownLevel(widths[i - 1] if i else 0, widths[i], depths[i], k, r, windows[i], drop)
            for i in range(len(widths))
        )
        top = len(widths) - 1
        self.up = nn.ModuleList(
            UpLevel(widths[top - u], widths[top - u - 1], depths[top - u - 1], k, r, windows[top - u - 1], drop)
            for u in range(top)
        )
        self.norm_out = LayerNorm2d(widths[0])
        self.conv_out = nn.Conv2d(widths[0], 2, 3, padding="same")
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)  # type: ignore[arg-type]  # Conv2d's bias is a Parameter here

    def encode(self, x: Tensor) -> list[Tensor]:
        """Features of every level, finest first."""
        feats = []
        x = self.conv_in(x)
        for level in self.down:
            x = level(x)
            feats.append(x)
        return feats

    def forward(self, x: Tensor) -> Tensor:
        feats = self.encode(x)
        x = feats[-1]
        for u, level in enumerate(self.up):
            x = level(x, feats[-2 - u])
        return self.conv_out(F.silu(self.norm_out(x)))


def _pixel_grid(h: int, w: int, like: Tensor) -> Tensor:
    """(2, h, w) pixel coordinates: x (column) then y (row)."""
    ys = torch.arange(h, dtype=like.dtype, device=like.device)
    xs = torch.arange(w, dtype=like.dtype, device=like.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy])


def float32_or_wider(*tensors: Tensor) -> torch.dtype:
    """The widest dtype of ``tensors``, at least float32: what the warp and the homographies compute in."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def without_autocast(device: torch.device) -> AbstractContextManager[None]:
    """Autocast turned off on ``device`` inside the block (nothing to turn off where it has none: meta)."""
    return torch.autocast(device.type, enabled=False) if torch.amp.is_autocast_available(device.type) else nullcontext()


def flow_warp(x: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """Sample ``x`` (N, C, h, w) at p - flow(p); flow (N, 2, h, w) in pixels (x, y).

    Bilinear, ``align_corners=True``, zero padding. Returns the warped map and
    the validity mask (the same warp of ones, (N, 1, h, w)), at least float32:
    the warp runs in float32 whatever autocast is on (bfloat16 holds no integer
    above 256 exactly, so a bfloat16 pixel grid would sample pixels away).
    """
    n, _, h, w = x.shape
    wide = float32_or_wider(x, flow)
    with without_autocast(x.device):
        x, flow = x.to(wide), flow.to(wide)
        pos = _pixel_grid(h, w, flow) - flow
        gx = pos[:, 0] / ((w - 1) / 2) - 1
        gy = pos[:, 1] / ((h - 1) / 2) - 1
        grid = torch.stack([gx, gy], dim=-1)
        ones = torch.ones(n, 1, h, w, dtype=wide, device=x.device)
        both = F.grid_sample(
            torch.cat([x, ones], dim=1), grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )
    return both[:, :-1], both[:, -1:]


class FlowRegistration(nn.Module):
    """Stage 2 as published: the U-Net's dense flow."""

    def __init__(self, cfg: FlowCNRDBConfig) -> None:
        super().__init__()
        self.unet = RegUNet(cfg)

    def forward(self, z_ref: Tensor, z: Tensor) -> Tensor:
        return self.unet(torch.cat([z_ref, z], dim=1))


class HomographyRegistration(nn.Module):
    """Stage 2 variant: one homography per frame from the pooled U-Net encoder.

    The head predicts 8 offsets from the identity (zero-initialised, so the
    untrained model starts at the identity) in normalised [-1, 1] coordinates;
    the homography is turned into a dense flow so the same warp applies.
    """

    def __init__(self, cfg: FlowCNRDBConfig) -> None:
        super().__init__()
        self.unet = RegUNet(cfg)
        self.head = nn.Linear(cfg.reg_widths[-1], 8)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def homography(self, z_ref: Tensor, z: Tensor) -> Tensor:
        return self.homography_from(self.unet.encode(torch.cat([z_ref, z], dim=1)))

    def homography_from(self, feats: list[Tensor]) -> Tensor:
        """(N, 3, 3) homographies from the encoder's features (finest first), at least float32 (under bfloat16
        autocast, 1 + an offset would lose all but 8 bits of the offset)."""
        delta = self.head(feats[-1].mean(dim=(2, 3)))
        delta = delta.to(float32_or_wider(delta))
        eye = torch.eye(3, dtype=delta.dtype, device=delta.device).flatten()[:8]
        h8 = eye + delta
        return torch.cat([h8, torch.ones_like(h8[:, :1])], dim=1).view(-1, 3, 3)

    def forward(self, z_ref: Tensor, z: Tensor) -> Tensor:
        return homography_flow(self.homography(z_ref, z), z)


def homography_flow(hom: Tensor, z: Tensor) -> Tensor:
    """The dense flow (N, 2, h, w) that the homographies ``hom`` induce on maps shaped like ``z``, in float32 (or
    wider) whatever autocast is on, like the warp it feeds."""
    n, _, h, w = z.shape
    wide = float32_or_wider(hom, z)
    with without_autocast(z.device):
        hom = hom.to(wide)
        pix = _pixel_grid(h, w, hom)
        sx, sy = (w - 1) / 2, (h - 1) / 2
        u = torch.stack([pix[0] / sx - 1, pix[1] / sy - 1, torch.ones_like(pix[0])]).view(3, -1)
        q = hom @ u  # (n, 3, h*w)
        qx = (q[:, 0] / q[:, 2] + 1) * sx
        qy = (q[:, 1] / q[:, 2] + 1) * sy
        target = torch.stack([qx, qy], dim=1).view(n, 2, h, w)
    return pix.unsqueeze(0) - target


# --------------------------------------------------------------------------- stage 3


class DenseLayer(nn.Sequential):
    """One CNRDB layer: 1x1 to base, CN(base, k, r, s), 1x1 to grow, SiLU."""

    def __init__(
        self, in_ch: int, base: int, grow: int, kernel_size: int, expand_ratio: float, window: int, drop: float
    ) -> None:
        super().__init__(
            nn.Conv2d(in_ch, base, 1),
            ConvNeXtBlock(base, kernel_size, expand_ratio, window, drop),
            nn.Conv2d(base, grow, 1),
            nn.SiLU(),
        )


class CNRDB(nn.Module):
    """Residual dense block of ConvNeXt layers: output = 0.2 * conv_out(dense) + x."""

    num_layers = 4

    def __init__(self, base: int, grow: int, kernel_size: int, expand_ratio: float, window: int, drop: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            DenseLayer(base + grow * j, base, grow, kernel_size, expand_ratio, window, drop)
            for j in range(self.num_layers)
        )
        self.conv_out = nn.Conv2d(base + grow * self.num_layers, base, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)  # type: ignore[arg-type]  # Conv2d's bias is a Parameter here
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for layer in self.blocks:
            feats.append(layer(torch.cat(feats, dim=1)))
        return 0.2 * self.drop(self.conv_out(torch.cat(feats, dim=1))) + x


class MergeModel(nn.Module):
    """Stage 3: fuse the aligned features of all frames and restore full-resolution RGB."""

    def __init__(self, cfg: FlowCNRDBConfig) -> None:
        super().__init__()
        per_frame = cfg.stem_width + (1 if cfg.append_mask else 0)
        base, feats = cfg.merge_base_channels, cfg.merge_features
        window = cfg.train_size // 2
        self.conv_in = nn.Conv2d(per_frame * cfg.num_brackets, base, 1)
        self.blocks = nn.Sequential(
            *[
                CNRDB(
                    base, cfg.merge_grow_channels, cfg.merge_kernel_size, cfg.merge_expand_ratio, window, cfg.merge_drop
                )
                for _ in range(cfg.merge_depth)
            ]
        )
        self.unpatch = nn.Sequential(
            nn.Conv2d(base, feats, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(feats, 4 * feats, 3, padding=1),
            nn.PixelShuffle(2),
        )
        self.conv_out = nn.Conv2d(feats, 3, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.constant_(self.conv_out.bias, 0.5)  # type: ignore[arg-type]  # Conv2d's bias is a Parameter here

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(self.unpatch(self.blocks(self.conv_in(x))))


class FlowCNRDB(nn.Module):
    """FlowCNRDB burst fusion network.

    Args:
        config: architecture arguments; ``FlowCNRDBConfig()`` is the published
            entry (18,651,029 parameters).
        **overrides: instead of ``config``, its fields as keyword arguments
            (``FlowCNRDB(**asdict(config))`` builds the same model).

    Input (B, num_brackets, H, W) float32 Bayer frames as stored (GRBG, no
    scaling), H and W multiples of ``config.multiple``; output (B, 3, H, W) RGB.
    """

    def __init__(self, config: FlowCNRDBConfig | None = None, **overrides: object) -> None:
        super().__init__()
        if config is not None and overrides:
            raise TypeError("pass a config or keyword arguments, not both")
        cfg = config or FlowCNRDBConfig(**overrides)  # type: ignore[arg-type]
        self.config = cfg
        self.stem = Stem(
            cfg.stem_width,
            cfg.stem_depth,
            cfg.stem_kernel_size,
            cfg.stem_expand_ratio,
            cfg.train_size // 2,
            cfg.stem_drop,
        )
        self.reg_model: nn.Module | None
        if cfg.align == "flow":
            self.reg_model = FlowRegistration(cfg)
        elif cfg.align == "homography":
            self.reg_model = HomographyRegistration(cfg)
        else:
            self.reg_model = None
        self.merge_model = MergeModel(cfg)

    def check_input(self, x: Tensor) -> None:
        """Refuse a burst of the wrong frame count or size (ValueError)."""
        cfg = self.config
        _, t, h, w = x.shape
        if t != cfg.num_brackets:
            raise ValueError(f"expected {cfg.num_brackets} frames, got {t}")
        if h % cfg.multiple or w % cfg.multiple:
            raise ValueError(f"H and W must be multiples of {cfg.multiple}, got {h}x{w}")

    def align(self, z_ref: Tensor, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Stage 2 of latents ``z`` (N, C, h, w) against ``z_ref`` (N, C, h, w): flow, warped features and mask.

        Without stage 2 (``align="none"``) the flow is zero, the features pass unwarped and the masks are ones.
        """
        if self.reg_model is None:
            n, _, h, w = z.shape
            return z.new_zeros(n, 2, h, w), z, z.new_ones(n, 1, h, w)
        flow = self.reg_model(z_ref, z)
        warped, mask = flow_warp(z, flow)
        return flow, warped, mask

    def forward(self, x: Tensor, return_intermediates: bool = False) -> Tensor | dict[str, Tensor]:
        """Fuse a burst.

        Returns the RGB output (B, 3, H, W); with ``return_intermediates=True`` a
        dict with ``output`` and ``stem_features`` ((B*9), C, H/2, W/2),
        ``flow`` (B, 9, 2, H/2, W/2), ``mask`` (B, 9, 1, H/2, W/2) and
        ``warped_features`` (B, 9, C, H/2, W/2).
        """
        self.check_input(x)
        b, t, h, w = x.shape
        z = self.stem(x.reshape(b * t, 1, h, w))  # stage 1, shared by every frame
        z_ref = z.unflatten(0, (b, t))[:, :1].expand(-1, t, -1, -1, -1).flatten(0, 1)
        flow, warped, mask = self.align(z_ref, z)  # stage 2: every frame (the reference too) against frame 0
        per_frame = torch.cat([warped, mask], dim=1) if self.config.append_mask else warped
        out = self.merge_model(per_frame.unflatten(0, (b, t)).flatten(1, 2))  # stage 3
        if not return_intermediates:
            return out
        return {
            "output": out,
            "stem_features": z,
            "flow": flow.unflatten(0, (b, t)),
            "mask": mask.unflatten(0, (b, t)),
            "warped_features": warped.unflatten(0, (b, t)),
        }
