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

This file imports only torch: it is exactly the file that goes into a code
submission. State-dict names follow the published checkpoint.
"""

from __future__ import annotations

import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Sequence, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FlowCNRDBConfig", "FlowCNRDB", "GRN", "ConvNeXtBlock", "flow_warp", "fast_path_applies"]


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
        self.block = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size, padding="same", groups=channels, bias=False),
            LayerNorm2d(channels),
            nn.Conv2d(channels, hidden, 1),
            nn.SiLU(),
            nn.Identity(),
            GRN(hidden, window),
            nn.Conv2d(hidden, channels, 1),
            nn.Dropout(drop),
        )
        nn.init.zeros_(self.block[6].weight)
        nn.init.zeros_(self.block[6].bias)

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
    def __init__(self, in_ch: int, width: int, depth: int, kernel_size: int, expand_ratio: float, window: int, drop: float) -> None:
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
    def __init__(self, in_ch: int, width: int, depth: int, kernel_size: int, expand_ratio: float, window: int, drop: float) -> None:
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
            DownLevel(widths[l - 1] if l else 0, widths[l], depths[l], k, r, windows[l], drop)
            for l in range(len(widths))
        )
        top = len(widths) - 1
        self.up = nn.ModuleList(
            UpLevel(widths[top - u], widths[top - u - 1], depths[top - u - 1], k, r, windows[top - u - 1], drop)
            for u in range(top)
        )
        self.norm_out = LayerNorm2d(widths[0])
        self.conv_out = nn.Conv2d(widths[0], 2, 3, padding="same")
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

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
        both = F.grid_sample(torch.cat([x, ones], dim=1), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
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

    def __init__(self, in_ch: int, base: int, grow: int, kernel_size: int, expand_ratio: float, window: int, drop: float) -> None:
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
        nn.init.zeros_(self.conv_out.bias)
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
                CNRDB(base, cfg.merge_grow_channels, cfg.merge_kernel_size, cfg.merge_expand_ratio, window, cfg.merge_drop)
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
        nn.init.constant_(self.conv_out.bias, 0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(self.unpatch(self.blocks(self.conv_in(x))))


# --------------------------------------------------------------------------- the model


class FlowCNRDB(nn.Module):
    """FlowCNRDB burst fusion network.

    Args:
        config: architecture arguments; ``FlowCNRDBConfig()`` is the published
            entry (18,651,029 parameters).
        **overrides: instead of ``config``, its fields as keyword arguments
            (``FlowCNRDB(**asdict(config))`` builds the same model).

    Input (B, num_brackets, H, W) float32 Bayer frames as stored (GRBG, no
    scaling), H and W multiples of ``config.multiple``; output (B, 3, H, W) RGB.

    ``frame_chunk`` limits how many frames go through stages 1 and 2 together
    (default: all of them on the faithful path, one at a time on the fast
    path); every frame is independent there, so the chunk only changes peak
    memory, never the result. On the fast path with large frames, chunks go
    through them ``frame_threads`` at a time side by side, one thread each
    (default: as many as the thread count, at most the CPUs).

    Inference on the CPU (eval mode without autograd) takes an equivalent fast
    path by default, decided once per forward by :func:`fast_path_applies`
    (the file's closing section; on a GPU the faithful path is already
    efficient). ``set_fast(False)`` selects the faithful, straightforward
    computation everywhere (training always uses it). ``set_precision(torch.bfloat16)``
    runs the fast path's point-wise layers and the CNRDBs' and U-Net's 3x3 convolutions in bfloat16.
    """

    def __init__(self, config: FlowCNRDBConfig | None = None, **overrides: object) -> None:
        super().__init__()
        if config is not None and overrides:
            raise TypeError("pass a config or keyword arguments, not both")
        cfg = config or FlowCNRDBConfig(**overrides)  # type: ignore[arg-type]
        self.config = cfg
        self.frame_chunk: int | None = None
        self.frame_threads: int | None = None
        self.fast = True
        self.compute_dtype: torch.dtype | None = None
        self.stem = Stem(
            cfg.stem_width, cfg.stem_depth, cfg.stem_kernel_size, cfg.stem_expand_ratio, cfg.train_size // 2, cfg.stem_drop
        )
        if cfg.align == "flow":
            self.reg_model: nn.Module | None = FlowRegistration(cfg)
        elif cfg.align == "homography":
            self.reg_model = HomographyRegistration(cfg)
        else:
            self.reg_model = None
        self.merge_model = MergeModel(cfg)


    def set_fast(self, fast: bool = True) -> FlowCNRDB:
        """Allow the fast CPU inference path (default) or force the faithful computation everywhere."""
        self.fast = fast
        return self

    def set_precision(self, dtype: torch.dtype | None = None) -> FlowCNRDB:
        """Run the fast path's point-wise layers, CNRDB fusion and U-Net 3x3 convolutions in ``dtype`` (bfloat16), or as the input (None).

        Everything else (norms, GRN statistics, residual streams, the flow and
        the warp) stays in the input's dtype (see :class:`Compute`). The faithful path ignores it
        (use ``torch.autocast`` there).
        """
        self.compute_dtype = dtype
        return self

    def forward(self, x: Tensor, return_intermediates: bool = False) -> Tensor | dict[str, Tensor]:
        """Fuse a burst.

        Returns the RGB output (B, 3, H, W); with ``return_intermediates=True`` a
        dict with ``output`` and ``stem_features`` ((B*9), C, H/2, W/2),
        ``flow`` (B, 9, 2, H/2, W/2), ``mask`` (B, 9, 1, H/2, W/2) and
        ``warped_features`` (B, 9, C, H/2, W/2).
        """
        cfg = self.config
        _, t, h, w = x.shape
        if t != cfg.num_brackets:
            raise ValueError(f"expected {cfg.num_brackets} frames, got {t}")
        if h % cfg.multiple or w % cfg.multiple:
            raise ValueError(f"H and W must be multiples of {cfg.multiple}, got {h}x{w}")
        if fast_path_applies(self, x):
            return _fast_forward(self, x, return_intermediates)
        reg = self.reg_model
        stages = Stages(self.stem, None if reg is None else (lambda ref: reg), self.merge_model)
        return self.fuse(x, stages, self.frame_chunk or t, return_intermediates)

    def fuse(
        self, x: Tensor, stages: Stages, chunk: int, return_intermediates: bool = False, run: FrameRunner | None = None
    ) -> Tensor | dict[str, Tensor]:
        """The three stages over a burst, frames ``chunk`` at a time through stages 1 and 2."""
        per_frame, intermediates = self.align_frames(x, stages, chunk, return_intermediates, run)
        # Stage 3: fusion and restoration (only its input and the intermediates asked for are alive).
        out = stages.merge(per_frame.flatten(1, 2))
        return {"output": out, **intermediates} if return_intermediates else out

    def align_frames(
        self, x: Tensor, stages: Stages, chunk: int, keep: bool = False, run: FrameRunner | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Stages 1 and 2: the input of stage 3, (B, T, C [+ 1], h, w), and with ``keep`` the intermediates.

        Stage 1 of the first chunk gives the reference latent; then each chunk
        goes through stage 1 (the first already has) and stage 2 against it,
        ``run(stem, step, starts)`` computing ``step(i, stem(i))`` for the
        chunks' first frames (in order by default; the fast path runs chunks
        side by side on threads).
        """
        b, t, h, w = x.shape

        def stem(i: int) -> Tensor:  # stage 1, shared by all frames: (B, n, C, h, w)
            return stages.stem(x[:, i : i + chunk].reshape(-1, 1, h, w)).unflatten(0, (b, -1))

        first = stem(0)
        register = None if stages.register is None else stages.register(first[:, 0])

        def step(i: int, zi: Tensor) -> tuple[Tensor | None, Tensor, Tensor, Tensor]:
            # Stage 2: every frame (the reference included) against frame 0.
            n = zi.shape[1]
            ref = first[:, :1].expand(-1, n, -1, -1, -1)
            flow, warped, mask = _align(register, ref.flatten(0, 1), zi.flatten(0, 1))
            return zi if keep else None, flow.unflatten(0, (b, n)), warped.unflatten(0, (b, n)), mask.unflatten(0, (b, n))

        parts = (run or _in_order)(lambda i: first if i == 0 else stem(i), step, range(0, t, chunk))
        warped, mask = torch.cat([p[2] for p in parts], dim=1), torch.cat([p[3] for p in parts], dim=1)
        per_frame = torch.cat([warped, mask], dim=2) if self.config.append_mask else warped
        if not keep:
            return per_frame, {}
        z = torch.cat([p[0] for p in parts if p[0] is not None], dim=1)
        flow = torch.cat([p[1] for p in parts], dim=1)
        return per_frame, {"stem_features": z.flatten(0, 1), "flow": flow, "mask": mask, "warped_features": warped}


T = TypeVar("T")
U = TypeVar("U")
FrameRunner = Callable[[Callable[[int], U], Callable[[int, U], T], Sequence[int]], list[T]]


def _in_order(first: Callable[[int], U], then: Callable[[int, U], T], starts: Sequence[int]) -> list[T]:
    return [then(i, first(i)) for i in starts]


@dataclass(frozen=True)
class Stages:
    """The callables of the three stages: the modules themselves, or their fast inference versions.

    ``register(ref)`` gives stage 2 against the reference latent ``ref`` (B, C, h, w), a callable of (z_ref, z),
    once per burst (the fast path computes the reference's share of stage 2's first convolution there).
    """

    stem: Callable[[Tensor], Tensor]
    register: Callable[[Tensor], Callable[[Tensor, Tensor], Tensor]] | None
    merge: Callable[[Tensor], Tensor]


def _align(register: Callable[[Tensor, Tensor], Tensor] | None, z_ref: Tensor, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Flow, warped features and mask of frames ``z`` against ``z_ref`` (no stage 2: zero flow, masks of ones)."""
    if register is None:
        n, _, h, w = z.shape
        return z.new_zeros(n, 2, h, w), z, z.new_ones(n, 1, h, w)
    flow = register(z_ref, z)
    warped, mask = flow_warp(z, flow)
    return flow, warped, mask


# --------------------------------------------------------------------------- Fast CPU inference — same results as above
#
# Everything below computes exactly what the modules above compute, with the
# same parameters, reorganised for a CPU: point-wise layers as matrix products
# in channels-last layout, the windowed GRN's box sums as a sliding window down
# the rows and block sums along the columns, with the replicate padding
# applied by broadcasting instead of materialised, large maps read back a
# cache-sized piece at a time (GRN statistics, products and what follows
# them), the CNRDB's dense features grown in one buffer, frames side by side through
# stages 1 and 2 on single-thread workers, as many threads as the machine's
# load leaves CPUs idle (never changing a bit of the result; on a busy
# machine stage 3 goes over row bands side by side, :class:`RowBands`), each
# expansion and its SiLU as one oneDNN product (float32: stages 1 and 2;
# bfloat16: every stage), and optionally bfloat16 matrix products (:class:`Compute`). It is taken when,
# and only when, ``fast_path_applies``;
# tests hold it to the faithful path within 1e-4.


def fast_path_applies(model: FlowCNRDB, x: Tensor) -> bool:
    """The one predicate: fast path allowed (``set_fast``), eval mode, autograd off, input on the CPU, run eagerly.

    Tracers and compilers (``torch.jit.trace``, which fvcore's FLOP counter
    uses, ONNX export, ``torch.compile``) see the faithful graph: the
    published computation, counted and exported as published.
    """
    eager = not torch.jit.is_tracing() and not torch.compiler.is_compiling()
    return model.fast and not model.training and not torch.is_grad_enabled() and x.device.type == "cpu" and eager


def _fast_forward(model: FlowCNRDB, x: Tensor, return_intermediates: bool) -> Tensor | dict[str, Tensor]:
    reg = model.reg_model
    dtype, wide = model.compute_dtype or x.dtype, x.dtype
    fused = fused_expansion_works(dtype)  # stages 1 and 2; stage 3 too in reduced precision (see Compute)
    frames = Compute(dtype, wide, fused_expansion=fused)
    cast = Compute(dtype, wide, fused_expansion=fused and dtype != wide)
    stages = Stages(
        stem=lambda chunk: _stem_fast(model.stem, chunk, frames),
        register=None if reg is None else (lambda ref: against_reference(reg, ref, frames)),
        merge=lambda merge_in: _merge_fast(model.merge_model, merge_in, cast),
    )
    threads = torch.get_num_threads()
    large = x[0, 0].numel() >= SAMPLE_LOAD_PIXELS
    workers = (model.frame_threads or frame_workers(threads)) if large else 1
    policy = threads_for_load(threads) if large else threads
    torch.set_num_threads(policy)
    run = None if workers == 1 else lambda first, then, starts: run_side_by_side(first, then, starts, workers)
    # A busy machine: stage 3 over row bands side by side (float32, one image at a time, "same" padding of odd kernels).
    banded = workers > 1 and policy < workers and x.shape[0] == 1 and cast.dtype == cast.wide == torch.float32
    banded = banded and model.config.merge_kernel_size % 2 == 1
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="row-bands") if banded else nullcontext() as pool:
            if pool is not None:
                bands = RowBands(pool)
                stages = replace(stages, merge=lambda merge_in: _merge_fast(model.merge_model, merge_in, cast, bands))
            return model.fuse(x, stages, model.frame_chunk or 1, return_intermediates, run)
    finally:
        torch.set_num_threads(threads)


def frame_workers(threads: int) -> int:
    """How many chunks of frames go through stages 1 and 2 side by side: ``threads``, at most this process's CPUs."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (OSError, AttributeError):
        cpus = os.cpu_count() or 1
    return max(1, min(threads, cpus))


def run_side_by_side(first: Callable[[int], U], then: Callable[[int, U], T], starts: Sequence[int], workers: int) -> list[T]:
    """``[then(i, first(i)) for i in starts]``, ``workers`` steps at a time on threads of one intra-op thread each.

    Stages 1 and 2 handle every frame on its own, so frames can run side by
    side instead of each operator being split across threads: no OpenMP
    barrier per operator, which on a busy machine waits for a descheduled
    thread thousands of times per image (measured at 384x768, 8 frames of
    stages 1 and 2: 3.62 s -> 3.43 s on a quiet machine, 10.1 s with one
    thread -> 7.3 s beside two busy processes). The steps that do not fill a
    round (the ninth frame of a burst on two threads) have their ``first``
    part (stage 1) taken by the first worker to finish its last round, and
    their ``then`` part run afterwards on the calling thread, with its
    intra-op threads (measured at full size: a worker had waited 0.7 s for
    the other's last frame, then the ninth frame's stage 1 took 0.4 s on two
    threads; from the end of the last round to the end of stage 2 now takes
    1.8 s instead of 2.1 s). Grad and inference mode are per thread: each
    step takes the caller's.
    """
    side = len(starts) - len(starts) % workers
    if not side:
        return _in_order(first, then, starts)
    threads = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="burst-frames") as pool:
            rounds = [pool.submit(on_one_thread(lambda i: then(i, first(i))), i) for i in starts[:side]]
            early = [pool.submit(on_one_thread(first), i) for i in starts[side:]]
            results = [f.result() for f in rounds]
            tails = [f.result() for f in early]
    finally:
        torch.set_num_threads(threads)  # the math libraries' counts are process-wide: the caller's again
    return results + [then(i, z) for i, z in zip(starts[side:], tails)]


def on_one_thread(step: Callable[..., T]) -> Callable[..., T]:
    """``step`` for a worker thread: one intra-op thread, and the calling thread's grad and inference mode (both per thread)."""
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def one(*args: object) -> T:
        torch.set_num_threads(1)
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return step(*args)

    return one


class Compute:
    """The dtypes of the fast path: ``dtype`` for matrix products and the dense 3x3 convolutions named below, ``wide`` for the rest.

    With ``dtype`` bfloat16 (``FlowCNRDB.set_precision``) the point-wise layers
    (matrix products), the CNRDB's 3x3 fusion convolutions and the U-Net's
    dense 3x3 convolutions (its skip convolutions and each frame's share of
    its first one: twice the float32 rate on one thread, conversions
    included) run in bfloat16; everything else stays in ``wide`` (the
    input's dtype): residual streams, the expanded maps, depth-wise
    convolutions, LayerNorm and GRN statistics, the flow and the warp, the
    remaining convolutions (measured: in bfloat16 oneDNN's buffers for all
    of them more than doubled the peak memory for no speed). Weights are
    converted once per forward. With ``dtype == wide`` every conversion is a no-op.

    ``fused_expansion``: ConvNeXt expansions (1x1 and SiLU) through oneDNN's
    fused product-and-SiLU (:func:`fused_expansion_works`), in float32 over a
    whole map at once (:meth:`expanded`, stages 1 and 2), in reduced
    precision ``ROWS`` pixels at a time, each piece widened into the
    expanded map while in cache (:meth:`products_into`, every stage).
    """

    ROWS = 8192  # pixels per float32 product: its output is still in cache for what follows it
    REDUCED_ROWS = 32768  # pixels per reduced-precision product (smaller pieces were 5 % slower in bfloat16)

    def __init__(self, dtype: torch.dtype, wide: torch.dtype, fused_expansion: bool = False) -> None:
        self.dtype, self.wide = dtype, wide
        self.fused_expansion = fused_expansion
        self._weights: dict[int, Tensor] = {}

    def weight(self, p: Tensor | None) -> Tensor | None:
        if p is None or p.dtype == self.dtype:
            return p
        if id(p) not in self._weights:
            self._weights[id(p)] = p.to(self.dtype)
        return self._weights[id(p)]

    def conv(self, conv: nn.Conv2d, x: Tensor) -> Tensor:
        return conv._conv_forward(x.to(self.dtype), self.weight(conv.weight), self.weight(conv.bias))

    @property
    def expands_whole(self) -> bool:
        """Whether a ConvNeXt expansion is one fused product over the whole map (:meth:`expanded`); reduced precision: in pieces."""
        return self.fused_expansion and self.dtype == self.wide

    def expanded(self, conv: nn.Conv2d, x: Tensor) -> Tensor:
        """silu(conv(x)) of a contiguous channels-last (..., C) map as one oneDNN product with the SiLU fused.

        Only where :attr:`expands_whole` (float32, stages 1 and 2; see :func:`fused_expansion_works`).
        """
        return _fused_silu_product(x, conv.weight.flatten(1), conv.bias)

    def linear(self, conv: nn.Conv2d, x: Tensor, silu: bool = False, add: Tensor | None = None) -> Tensor:
        """A 1x1 convolution on a channels-last (..., C) map, returned in the wide dtype (see :meth:`linear_into`)."""
        return self.linear_into(conv, x, x.new_empty(*x.shape[:-1], conv.out_channels, dtype=self.wide), silu, add)

    def linear_into(self, conv: nn.Conv2d, x: Tensor, out: Tensor, silu: bool = False, add: Tensor | None = None) -> Tensor:
        """A 1x1 convolution on a channels-last (..., C) map written into ``out``, each piece then SiLU or ``+ add``.

        The product runs in ``dtype``, ``ROWS`` pixels at a time (``REDUCED_ROWS`` in reduced precision), each piece's
        SiLU or sum following at once in the wide dtype while the piece is in
        cache (measured at full size, 294912 x 32 -> 80 with SiLU: 23 ms in one
        piece, 17 ms in pieces). ``x`` may be a column slice of the CNRDB's
        buffer (read in place), ``out`` one too (written in place). In reduced
        precision the pieces also bound oneDNN's buffers (full-size bfloat16
        products in one piece raised the peak memory from 2.4 to 5.8 GB).
        (In float32, oneDNN's fused product-and-SiLU or product-and-sum, ``torch.ops.mkldnn._linear_pointwise``,
        is no faster on two threads, as in stage 3; on the single-thread workers of stages 1 and 2 the
        fused product-and-SiLU is, and in reduced precision on any thread count: :func:`fused_expansion_works`.)
        """
        w = self.weight(conv.weight).flatten(1)
        return self.products_into([(x, w)], self.weight(conv.bias), out, silu, add)

    def products_into(
        self, terms: Sequence[tuple[Tensor, Tensor]], b: Tensor | None, out: Tensor, silu: bool = False, add: Tensor | None = None
    ) -> Tensor:
        """sum of x @ w.T over ``terms`` (+ ``b``) into ``out``, a piece at a time as in :meth:`linear_into`.

        The weights ``w`` (out, in) are in ``dtype`` already; each ``x`` is a channels-last (..., C) map of ``out``'s pixels.
        """
        srcs = [(x.flatten(0, -2), w) for x, w in terms]
        dst = out.view(-1, out.shape[-1])
        extra = None if add is None else add.flatten(0, -2)
        direct = dst.dtype == self.dtype == self.wide
        fused = silu and len(srcs) == 1 and not direct and self.fused_expansion
        step = self.ROWS if direct or fused else self.REDUCED_ROWS
        for i in range(0, dst.shape[0], step):
            piece = dst[i : i + step]
            y = piece if direct else None
            for k, (src, w) in enumerate(srcs):
                part = src[i : i + step].to(self.dtype)
                if fused:  # the SiLU comes with the product, in float32 before the rounding to ``dtype``
                    y = piece.copy_(_fused_silu_product(part, w, b))
                elif direct and k:
                    piece.addmm_(part, w.t())
                elif direct:
                    _product_into(part, w, b, piece)
                else:  # into the wide output by converting the product; into a reduced-precision buffer after the SiLU
                    part = _product_into(part, w, b if k == 0 else None, part.new_empty(part.shape[0], w.shape[0]))
                    if y is None:
                        y = piece.copy_(part) if piece.dtype == self.wide else part.to(self.wide)
                    else:
                        y.add_(part)
            assert y is not None  # there is at least one term
            if silu and not fused:
                F.silu(y, inplace=True)
            elif extra is not None:
                y.add_(extra[i : i + step])
            if y.dtype != piece.dtype:
                piece.copy_(y)
        return out


def _product_into(x: Tensor, w: Tensor, b: Tensor | None, out: Tensor) -> Tensor:
    """x @ w.T (+ b) of a (pixels, C) matrix, written into ``out``."""
    return torch.mm(x, w.t(), out=out) if b is None else torch.addmm(b, x, w.t(), out=out)


def _fused_silu_product(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """oneDNN's silu(x @ w.T + b), the SiLU applied as each piece is computed (a new tensor)."""
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "swish", [], "")


@functools.cache
def fused_expansion_works(dtype: torch.dtype = torch.float32) -> bool:
    """Whether oneDNN's fused product-and-SiLU in ``dtype`` exists in this torch build and agrees with ``silu(linear(x))``.

    In float32: stages 1 and 2 run on single-thread workers, where it is faster than
    MKL's product, a piece at a time, followed by torch's SiLU (measured on one
    thread, 384 x 768 x 32 -> 80: 41 -> 29 ms; 192 x 384 x 64 -> 128: 25 -> 20 ms;
    full-size forwards: stages 1 and 2 16.7-17.5 -> 16.3-16.8 s). On two threads, as
    in stage 3, it is not (384 x 768 x 64 -> 128: 44 ms either way; a full-size
    forward 0.7 s slower with it there too), so stage 3 keeps the products.
    Its results do not depend on the thread count (tested with the whole
    forward), so the load still never changes a bit. In bfloat16 it is
    faster on one and on two threads, in pieces of ``Compute.ROWS`` pixels
    (bfloat16 product, float32 SiLU, float32 expanded map: 47 -> 41 ms on
    one thread and 28 -> 22 ms on two at 384 x 768 x 32 -> 128; stage 3 of a
    full-size forward 11.8 -> 10.7 s), so every stage uses it there.
    Probed once per process and dtype.
    """
    return _probe_fused_expansion(dtype)


def _probe_fused_expansion(dtype: torch.dtype = torch.float32) -> bool:
    gen = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*shape, generator=gen).to(dtype) for shape in ((3, 5, 16), (40, 16), (40,)))
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        with torch.inference_mode():
            fused = _fused_silu_product(x, w, b)
    except (AttributeError, RuntimeError, NotImplementedError, TypeError):
        return False
    expected = F.silu(F.linear(x.double(), w.double(), b.double()))  # rounded once to ``dtype`` at most
    tol = max(torch.finfo(dtype).eps, 1e-5)
    if fused.shape != expected.shape or fused.dtype != dtype:
        return False
    return bool(torch.allclose(fused.double(), expected, rtol=tol, atol=1e-6))


SAMPLE_LOAD_PIXELS = 256 * 256  # frames this large take seconds: the 50 ms load sample is worth it


def threads_for_load(threads: int, window: float = 0.05) -> int:
    """The threads one forward uses: at most ``threads``, and no more than the CPUs other processes leave idle.

    Every operator of a forward is an OpenMP parallel region that ends in a
    barrier; on a CPU shared with busy processes each barrier waits for a thread
    the OS has descheduled, thousands of times per image (measured: with two
    busy processes on two cores, two threads take 1.6-2.3x the single-thread
    time). So the idle share of this process's CPUs is sampled for ``window``
    seconds before each forward of frames of ``SAMPLE_LOAD_PIXELS`` or more
    (``/proc/stat``; on systems without it the count is kept) and the forward
    runs with that many threads, at least one, restoring the count after it.
    The thread count never changes a bit of the result (the 1x1 projections
    that oneDNN computed differently on one and two threads are matrix
    products: :func:`_merge_fast`).
    """
    if threads <= 1:
        return threads
    idle = idle_cpus(window)
    return threads if idle is None else max(1, min(threads, round(idle)))


def idle_cpus(window: float) -> float | None:
    """How many of this process's CPUs were idle over the next ``window`` seconds (None where unknown)."""
    try:
        cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
        before = _cpu_times(cpus)
        time.sleep(window)
        after = _cpu_times(cpus)
    except (OSError, AttributeError, ValueError):
        return None
    return idle_share(before, after) * len(cpus)


def _cpu_times(cpus: set[str]) -> dict[str, list[int]]:
    """``/proc/stat`` jiffies (user, nice, system, idle, iowait, ...) of the named CPUs."""
    with open("/proc/stat") as f:
        rows = (line.split() for line in f if line.startswith("cpu"))
        return {r[0]: [int(v) for v in r[1:]] for r in rows if r[0] in cpus}


def idle_share(before: dict[str, list[int]], after: dict[str, list[int]]) -> float:
    """The fraction of CPU time spent idle (idle + iowait) between two ``/proc/stat`` samples; 1.0 when none passed."""
    total = idle = 0
    for cpu, t0 in before.items():
        t1 = after.get(cpu, t0)
        total += sum(t1[:8]) - sum(t0[:8])
        idle += (t1[3] - t0[3]) + (t1[4] - t0[4])
    return 1.0 if total <= 0 else idle / total


def _stem_fast(stem: Stem, x: Tensor, cast: Compute) -> Tensor:
    return _blocks_fast(stem.blocks, stem.patch(x), cast)


def _blocks_fast(blocks: nn.Sequential, x: Tensor, cast: Compute) -> Tensor:
    for block in blocks:
        x = convnext_fast(block, x, cast)
    return x


def _unet_encode_fast(unet: RegUNet, x: Tensor, cast: Compute) -> list[Tensor]:
    """The encoder's features from ``x``, the output of ``unet.conv_in``."""
    feats = []
    for level in unet.down:
        if level.proj_in is not None:
            x = level.proj_in(x)
        x = _blocks_fast(level.blocks, x, cast)
        feats.append(x)
    return feats


def _unet_fast(unet: RegUNet, x: Tensor, cast: Compute) -> Tensor:
    feats = _unet_encode_fast(unet, x, cast)
    x = feats[-1]
    wide = Compute(cast.wide, cast.wide)
    for u, level in enumerate(unet.up):
        up = wide.linear(level.upsample.proj, x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # see _merge_fast
        skip = cast.conv(level.skip_conv, torch.cat([F.pixel_shuffle(up, 2), feats[-2 - u]], dim=1)).to(cast.wide)
        x = _blocks_fast(level.blocks, skip, cast)
    return unet.conv_out(F.silu(unet.norm_out(x)))


def against_reference(reg: nn.Module, ref: Tensor, cast: Compute) -> Callable[[Tensor, Tensor], Tensor]:
    """Stage 2 of the fast path against the reference latent ``ref`` (B, C, h, w): a callable of (z_ref, z).

    The U-Net's first convolution reads concat(z_ref, z); its output is
    conv(z_ref, W[:, :C]) + conv(z, W[:, C:]) + b, and z_ref is the same for
    every frame of a burst: its share goes once per burst, here, and each
    frame convolves only its own C channels, without the concatenation
    (measured at full size, one thread: 164 -> 71 ms per frame).
    """
    conv, c = reg.unet.conv_in, ref.shape[1]
    w_ref, w_frame = conv.weight[:, :c].contiguous(), conv.weight[:, c:].to(cast.dtype, memory_format=torch.contiguous_format)
    shared = conv._conv_forward(one_image_strides(ref), w_ref, conv.bias).unsqueeze(1)  # (B, 1, C0, h, w)

    def register(z_ref: Tensor, z: Tensor) -> Tensor:
        # the B bursts' frames: (B * n, C0, h, w), in reduced precision too (see Compute)
        x = conv._conv_forward(one_image_strides(z).to(cast.dtype), w_frame, None).to(cast.wide)
        x.unflatten(0, (shared.shape[0], -1)).add_(shared)  # in place through a view: x keeps its strides
        if isinstance(reg, HomographyRegistration):
            return homography_flow(reg.homography_from(_unet_encode_fast(reg.unet, x, cast)), z)
        return _unet_fast(reg.unet, x, cast)

    return register


def one_image_strides(x: Tensor) -> Tensor:
    """``x`` (B, C, h, w), with a batch of one given the batch stride of a dense map (the same memory).

    A dimension of size one may carry any stride, and views that split and
    merge the batch (B, n frames) leave it at C for a channels-last map;
    oneDNN then takes the map for planar: it copied each frame's latent to
    planar layout before stage 2's first convolution, computed that planar,
    and the first ConvNeXt block copied the result back (measured: stage 2 of
    one full-size frame on one thread, 2.79 -> 2.74 s; where the U-Net's
    first level got such a map too, its blocks ran planar: 3.2 -> 2.8 s).
    """
    if x.shape[0] != 1 or x.stride(0) == x[0].numel() or not x.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.as_strided(x.shape, (x[0].numel(), *x.stride()[1:]))


def _merge_fast(merge: MergeModel, x: Tensor, cast: Compute, bands: RowBands | None = None) -> Tensor:
    """``merge(x)``: the 1x1 input projection is a matrix product on the (B, C, h, w) input read as (h*w, C) in place.

    Like the U-Net's upsampling projection it stays a float32 product: oneDNN's
    1x1 convolutions with many input channels (297 -> 64 here, 512 -> 1024
    there) give results that depend on the number of threads (measured: up to
    1e-6 apart, enough to move an output pixel by one level), and the fast path
    runs with as many threads as the machine's load leaves idle; the matrix
    products give the same bits on one thread and on two.
    """
    b, _, h, w = x.shape
    x = Compute(cast.wide, cast.wide).linear(merge.conv_in, x.flatten(2).transpose(1, 2))  # (B, h*w, base)
    x = x.view(b, h, w, -1).permute(0, 3, 1, 2)
    for block in merge.blocks:
        x = cnrdb_fast(block, x, cast, bands)
    return merge.conv_out(merge.unpatch(x))


def convnext_fast(
    block: ConvNeXtBlock, x: Tensor, cast: Compute, bands: RowBands | None = None, then: tuple[nn.Conv2d, Tensor] | None = None
) -> Tensor:
    """``block(x)``: point-wise layers as matrix products in channels-last layout, a few rows at a time.

    The depth-wise convolution and LayerNorm go over the whole map, the
    expansion and its SiLU ``Compute.ROWS`` pixels at a time (with
    ``cast.expands_whole``, float32 stages 1 and 2: one oneDNN product with
    the SiLU fused, :meth:`Compute.expanded`); once the GRN's
    window statistics are known, its normalisation, the projection and the
    residual sum go ``PROJECT_PIXELS`` at a time, each piece of the expanded
    map read back from cache instead of memory (measured, one block on a
    384 x 768 x 64 map: 159 -> 153 ms; 384 x 768 x 32: 87 -> 76 ms).
    With ``bands`` (a busy machine, float32, one image) each of those steps
    goes band by band on the band workers instead, the depth-wise
    convolution with the rows its windows reach (:class:`RowBands`). Each
    pixel's arithmetic is the same in every arrangement, so are the bits.

    With ``then = (conv, into)`` (a CNRDB layer: 1x1 ``conv`` and SiLU after
    the block) silu(conv(block(x))) goes into ``into`` (B, h, w, C') and the
    block's own output is never formed (:func:`fold_projection`).
    """
    dw, ln, pw1, _, _, grn, pw2, _ = block.block
    x = x.to(cast.wide).contiguous(memory_format=torch.channels_last)
    b, _, h, w = x.shape
    rows = x.permute(0, 2, 3, 1)  # (B, h, w, C); depth-wise, LayerNorm, GRN and the residual in the wide dtype
    out = torch.empty_like(rows) if then is None else then[1]
    terms = None if then is None else fold_projection(pw2, then[0], cast.dtype)
    p = dw.kernel_size[0] // 2  # "same" padding of an odd kernel (rows a band's windows reach)

    def expand(r0: int, r1: int) -> None:
        lo, hi = max(0, r0 - p), min(h, r1 + p)  # the band and the rows its windows reach
        cast.linear_into(pw1, _layer_norm(ln, dw(x[:, :, lo:hi])[:, :, r0 - lo : r1 - lo]), y[:, r0:r1], silu=True)

    def project(r0: int, r1: int) -> None:
        grn_apply_(grn, y, n, (r0, r1))
        if terms is None:
            cast.linear_into(pw2, y[:, r0:r1], out[:, r0:r1], add=rows[:, r0:r1])
        else:
            wg, wx, bias = terms
            cast.products_into([(y[:, r0:r1], wg), (rows[:, r0:r1], wx)], bias, out[:, r0:r1], silu=True)

    if bands is None and cast.expands_whole:
        y = cast.expanded(pw1, _layer_norm(ln, dw(x)))
    else:
        y = rows.new_empty(*rows.shape[:-1], pw1.out_channels)
        (_whole if bands is None else bands.run)(expand, h)
    n = grn_scale(grn, y)
    (in_row_pieces(b, w) if bands is None else bands.run)(project, h)
    return out.permute(0, 3, 1, 2)


def fold_projection(pw2: nn.Conv2d, conv: nn.Conv2d, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """(Wc W2, Wc, Wc b2 + bc) in ``dtype``: ``conv`` after a block's projection ``pw2`` and residual sum, as two products.

    conv(x + pw2(g)) = g @ (Wc W2).T + x @ Wc.T + (Wc b2 + bc): two products
    (128 -> 32 and 64 -> 32 in a published CNRDB layer) instead of the
    projection (128 -> 64), the residual sum, a 64-channel map written and
    read back, and ``conv`` (64 -> 32) (measured, one full-size CNRDB:
    1.19 -> 1.14 s in float32, 0.78 -> 0.74 s with bfloat16 products).
    Folded in float64 and rounded once: every product of two float32 values
    is exact there, so the result does not depend on how a matrix product
    splits its sums over threads (the fast path's bits never depend on the
    machine's load).
    """
    wc, w2 = conv.weight.flatten(1).double(), pw2.weight.flatten(1).double()
    bias = torch.zeros(wc.shape[0], dtype=torch.float64)
    if pw2.bias is not None:
        bias += wc @ pw2.bias.double()
    if conv.bias is not None:
        bias += conv.bias.double()
    return (wc @ w2).to(dtype), wc.to(dtype), bias.to(dtype)


PROJECT_PIXELS = 12288  # pixels per piece of a ConvNeXt block's projection: 16 rows of a full-size latent map


def in_row_pieces(b: int, w: int) -> Callable[[Callable[[int, int], None], int], None]:
    """A runner of ``step(r0, r1)`` over the rows of B x h x ``w`` maps in order, ``PROJECT_PIXELS`` per piece (one piece if B > 1)."""

    def run(step: Callable[[int, int], None], h: int) -> None:
        per = h if b > 1 else max(1, PROJECT_PIXELS // w)
        for r0 in range(0, h, per):
            step(r0, min(h, r0 + per))

    return run


def _layer_norm(ln: LayerNorm2d, d: Tensor) -> Tensor:
    """LayerNorm of a (B, C, h, w) channels-last map over its channels, as a (B, h, w, C) view."""
    return F.layer_norm(d.permute(0, 2, 3, 1), ln.norm.normalized_shape, ln.norm.weight, ln.norm.bias, ln.norm.eps)


def cnrdb_fast(cnrdb: CNRDB, x: Tensor, cast: Compute, bands: RowBands | None = None) -> Tensor:
    """``cnrdb(x)``: the dense features grow in one channels-last buffer, no concatenations.

    With ``bands`` (a busy machine, float32, one image) every step goes band by
    band on the band workers, the fusion convolution with the row its 3x3
    window reaches on either side (:class:`RowBands`); the same bits.
    """
    b, c, h, w = x.shape
    grow = cnrdb.blocks[0][2].out_channels
    run = _whole if bands is None else bands.run
    buf = x.new_empty(b, h, w, c + grow * len(cnrdb.blocks), dtype=cast.dtype)
    buf[..., :c] = x.permute(0, 2, 3, 1)
    for j, (proj, block, out, _) in enumerate(cnrdb.blocks):
        start = c + grow * j
        y = x.new_empty(b, h, w, proj.out_channels, dtype=cast.wide)
        run(lambda r0, r1: cast.linear_into(proj, buf[:, r0:r1, :, :start], y[:, r0:r1]), h)
        convnext_fast(block, y.permute(0, 3, 1, 2), cast, bands, then=(out, buf[..., start : start + grow]))
    fused = torch.empty_like(x)

    def fuse(r0: int, r1: int) -> None:
        lo, hi = max(0, r0 - 1), min(h, r1 + 1)
        conv = cast.conv(cnrdb.conv_out, buf[:, lo:hi].permute(0, 3, 1, 2))[:, :, r0 - lo : r1 - lo].to(cast.wide)
        torch.add(conv.mul_(0.2), x[:, :, r0:r1], out=fused[:, :, r0:r1])

    run(fuse, h)
    return fused


def _whole(step: Callable[[int, int], None], h: int) -> None:
    """``step`` over all ``h`` rows at once (the quiet machine's runner)."""
    step(0, h)


class RowBands:
    """Stage 3 on a busy machine: each step of a block over row bands, the bands side by side on single-thread workers.

    Stage 3 is one chain of operators. On a quiet machine each runs on all
    threads; beside busy processes every operator's barrier waits for a
    descheduled thread, so the thread policy gives it one thread, about two
    thirds of a core with two busy processes on two cores. Here the point-wise
    steps of a block (depth-wise convolution, LayerNorm, expansion and SiLU;
    GRN normalisation, projection and residual; the CNRDB's projections and
    fusion convolution) run band by band, ``COUNT`` bands per map, taken by
    whichever worker is free: a descheduled worker holds up one band, not
    every operator. The GRN's window statistics, which need the whole map,
    stay on the calling thread. Every band computes what the whole map would
    (same operators, same order per pixel): the bits are the same.
    """

    COUNT = 8

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.pool = pool

    def run(self, step: Callable[[int, int], None], h: int) -> None:
        """``step(r0, r1)`` for the bands of ``h`` rows."""
        n = min(self.COUNT, h)
        bands = [(h * i // n, h * (i + 1) // n) for i in range(n)]
        list(self.pool.map(on_one_thread(step), *zip(*bands)))


_ONE = torch.ones(())


def grn_channels_last_(grn: GRN, x: Tensor) -> Tensor:
    """``grn`` on a (B, h, w, C) map, overwriting ``x``.

    Channels last makes the box sums run over contiguous rows and the channel
    mean a reduction over the innermost axis; the normalisation is folded into
    one multiply-add, x * (gamma * N + 1) + beta.
    """
    return grn_apply_(grn, x, grn_scale(grn, x))


def grn_scale(grn: GRN, x: Tensor) -> Tensor:
    """gamma * N + 1 of ``grn`` for a (B, h, w, C) map, over its valid windows (not yet padded).

    On large maps the window sums go ``GRN_CHUNK_BYTES`` of row sums at a
    time: the sliding row sums of a few output rows, their column sums and
    their normalisation, while those rows are still in cache. Over a whole
    full-size map the row sums alone (100 MB at 128 channels) left the cache
    before the column sums read them back (measured on a 384 x 768 x 128 map:
    54 ms whole, 37 ms in chunks). Maps whose row sums fit in three chunks go
    in one (at 192 x 384, chunks were 10 % slower). Every output row's
    arithmetic is the same either way, so are the bits.
    """
    _, h, w, _ = x.shape
    s = grn.window
    if h <= s and w <= s:
        g = torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True)
        return _normalised(grn, g, g)
    k1, k2 = min(h, s), min(w, s)
    rows, row = h - k1 + 1, x[:, 0].nbytes
    whole = rows * row <= 3 * GRN_CHUNK_BYTES
    out = None if whole else x.new_empty(x.shape[0], rows, w - k2 + 1, x.shape[3])
    for j0, sums in _row_square_sums(x, k1, rows if whole else max(1, GRN_CHUNK_BYTES // row)):
        g = _column_window_sums_(sums, k2).clamp_min_(0).sqrt_()
        if out is None:
            return _normalised(grn, g, g)
        _normalised(grn, g, out[:, j0 : j0 + g.shape[1]])
    return out


GRN_CHUNK_BYTES = 6 << 20  # row sums per chunk of grn_scale: about a fifth of this machine's 32 MB L3 cache


def _normalised(grn: GRN, g: Tensor, out: Tensor) -> Tensor:
    """gamma * N + 1 with N = G / (mean_c G + eps), written into ``out``: two passes over G (overwritten)."""
    return torch.addcmul(_ONE, g.div_(g.mean(dim=-1, keepdim=True).add_(1e-6)), grn.gamma.view(-1), out=out)


def grn_apply_(grn: GRN, x: Tensor, n: Tensor, rows: tuple[int, int] | None = None) -> Tensor:
    """x * n + beta over ``x``'s rows ``rows`` (default: all), in place.

    Replicate padding without materialising it: each band of x takes its edge
    of n by broadcasting.
    """
    _, h, w, _ = x.shape
    r0, r1 = rows or (0, h)
    beta = grn.beta.view(-1)
    for ys, yn, ns, nn_ in _segments(h, n.shape[1]):
        s0, s1 = max(ys, r0), min(ys + yn, r1)
        if s0 >= s1:
            continue
        src = n[:, ns + s0 - ys : ns + s1 - ys] if nn_ == yn else n[:, ns : ns + 1]
        for xs, xn, ms, mn in _segments(w, n.shape[2]):
            band = x[:, s0:s1, xs : xs + xn]
            torch.addcmul(beta, band, src[:, :, ms : ms + mn], out=band)
    return x


def _row_square_sums(x: Tensor, k: int, step: int) -> Iterator[tuple[int, Tensor]]:
    """The h - k + 1 'valid' sums of the squares of ``k`` consecutive rows of a (B, h, w, C) map, ``step`` at a time.

    Yields (first row, sums of ``step`` rows or fewer) in order, all in one
    buffer that the next chunk overwrites. A sliding window, row by row: the
    first sum accumulates k squared rows, each next one adds the row entering
    and subtracts the one leaving (the previous chunk's last sum is kept
    aside, so the caller may overwrite what it gets). Every step is one
    contiguous, vectorised operation on whole rows, much faster on a CPU than
    a cumulative sum down that axis (measured: also 4x faster than block
    sums). Along the columns the slices are small and strided:
    :func:`_column_window_sums_` needs about 40 operations whatever the width.
    """
    rows = x.shape[1] - k + 1
    buf = x.new_empty(x.shape[0], min(step, rows), *x.shape[2:])
    last = x.new_empty(x.shape[0], *x.shape[2:])
    for j0 in range(0, rows, step):
        out = buf[:, : min(step, rows - j0)]
        for j in range(j0, j0 + out.shape[1]):
            acc = out[:, j - j0]
            if j == 0:
                acc.zero_()
                for i in range(k):
                    acc.addcmul_(x[:, i], x[:, i])
                continue
            enter, leave = x[:, j + k - 1], x[:, j - 1]
            prev = last if j == j0 else out[:, j - j0 - 1]
            torch.addcmul(prev, enter, enter, out=acc).addcmul_(leave, leave, value=-1)
        if j0 + step < rows:
            last.copy_(out[:, -1])
        yield j0, out


def _column_window_sums_(src: Tensor, k: int) -> Tensor:
    """The n - k + 1 'valid' sums of ``k`` consecutive columns of a contiguous (..., n, C) map, written over ``src``.

    The window sums at every ``b``-th start come from block sums (one
    reduction, then a cumulative sum over n / b blocks); the b - 1 starts after
    each follow by adding the differences src[i + k] - src[i], b - 1 whole-map
    operations vectorised over the channels. torch's cumulative sum along this
    axis is a scalar loop per channel with a dependency at every step
    (measured at 257 x 768 x 128: 38 ms, this 22 ms). Once the block sums and
    the differences are taken, ``src`` is not read again: the sums overwrite
    its first n - k + 1 columns (the result is a view of it), so no map-sized
    output is allocated.
    """
    *lead, n, c = src.shape
    if n == k:
        return src.sum(-2, keepdim=True)
    b = next((b for b in (32, 16, 8) if k % b == 0 and n % b == 0), 0)
    if not b:
        cum = src.cumsum(-2)
        out = cum.new_empty(*lead, n - k + 1, c)
        out[..., :1, :] = cum[..., k - 1 : k, :]
        torch.sub(cum[..., k:, :], cum[..., : n - k, :], out=out[..., 1:, :])
        return out
    rows = src.reshape(-1, n, c)
    blocks, m = n // b, k // b
    cum = rows.view(-1, blocks, b, c).sum(2).cumsum(1)  # (P, blocks, C): sums of the first 1, 2, ... blocks
    starts = blocks - m + 1  # window sums at the starts 0, b, 2b, ..., n - k
    aligned = cum[:, m - 1 :].clone()
    aligned[:, 1:] -= cum[:, : starts - 1]
    full = (starts - 1) * b
    steps = torch.sub(rows[:, k:], rows[:, : n - k]).view(-1, starts - 1, b, c)
    out = rows[:, : n - k + 1]  # src from here on
    grid = out[:, :full].view(-1, starts - 1, b, c)
    grid[:, :, 0] = aligned[:, :-1]
    for t in range(1, b):
        torch.add(grid[:, :, t - 1], steps[:, :, t - 1], out=grid[:, :, t])
    out[:, full] = aligned[:, -1]
    return out.view(*lead, n - k + 1, c)


def _segments(size: int, valid: int) -> list[tuple[int, int, int, int]]:
    """(start, length, source start, source length) of the replicate-padded layout along one axis.

    The valid values sit after (size - valid) // 2 copies of the first one and
    before the remaining copies of the last, as ``F.pad(mode='replicate')`` places them.
    """
    top = (size - valid) // 2
    bottom = size - valid - top
    segs = [(top, valid, 0, valid)]
    if top:
        segs.insert(0, (0, top, 0, 1))
    if bottom:
        segs.append((top + valid, bottom, valid - 1, 1))
    return segs
