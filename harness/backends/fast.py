"""``fast``: FlowCNRDB's CPU inference path, the same function as the published forward, reorganised.

Stage 1 and 2 go frame by frame, several frames side by side on
single-thread workers (:func:`run_side_by_side`) when the frames are large;
stage 2's first convolution takes the reference frame's share once per burst
(:func:`against_reference`); the building blocks are
:mod:`harness.backends.flowcnrdb_kernels`. Threads and dtype are arguments,
never process state: the calling thread's count is restored after the
workers ran. It serves FlowCNRDB variants on a CPU in float32 and bfloat16.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.backends.base import Forward, Prepared, Settings
from harness.backends.flowcnrdb_kernels import Compute, cnrdb_fast, convnext_fast, fused_expansion_works
from harness.models.flowcnrdb import (
    FlowCNRDB,
    FlowRegistration,
    HomographyRegistration,
    MergeModel,
    RegUNet,
    Stem,
    flow_warp,
    homography_flow,
)
from harness.options import Precision

T = TypeVar("T")
U = TypeVar("U")

SIDE_BY_SIDE_PIXELS = 256 * 256  # frames at least this large go through stages 1 and 2 side by side


def fast_forward(
    model: FlowCNRDB, x: Tensor, dtype: torch.dtype | None = None, workers: int = 1, return_intermediates: bool = False
) -> Tensor | dict[str, Tensor]:
    """``model(x, return_intermediates)`` computed by the fast path, in inference.

    ``dtype`` bfloat16 runs matrix products and dense 3x3 convolutions in
    bfloat16 (:class:`Compute`); ``workers`` > 1 runs stages 1 and 2 of that
    many frames side by side, one thread each.
    """
    model.check_input(x)
    b, t, h, w = x.shape
    wide = x.dtype
    dtype = dtype or wide
    fused = fused_expansion_works(dtype)
    frames = Compute(dtype, wide, fused_expansion=fused)  # stages 1 and 2
    cast = Compute(dtype, wide, fused_expansion=fused and dtype != wide)  # stage 3

    def stem(i: int) -> Tensor:  # stage 1 of frame i: (B, 1, C, h, w)
        return _blocks_fast(
            model.stem.blocks, model.stem.patch(x[:, i : i + 1].reshape(-1, 1, h, w)), frames
        ).unflatten(0, (b, -1))

    first = stem(0)
    reg = model.reg_model
    register = None if reg is None else against_reference(reg, first[:, 0], frames)

    def step(i: int, zi: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # stage 2 against frame 0
        flow, warped, mask = _align(register, zi.flatten(0, 1))
        return zi, flow.unflatten(0, (b, 1)), warped.unflatten(0, (b, 1)), mask.unflatten(0, (b, 1))

    def first_or_stem(i: int) -> Tensor:
        return first if i == 0 else stem(i)

    if workers > 1:
        parts = run_side_by_side(first_or_stem, step, range(t), workers)
    else:
        parts = [step(i, first_or_stem(i)) for i in range(t)]
    warped, mask = torch.cat([p[2] for p in parts], dim=1), torch.cat([p[3] for p in parts], dim=1)
    per_frame = torch.cat([warped, mask], dim=2) if model.config.append_mask else warped
    out = _merge_fast(model.merge_model, per_frame.flatten(1, 2), cast)
    if not return_intermediates:
        return out
    z = torch.cat([p[0] for p in parts], dim=1)
    flow = torch.cat([p[1] for p in parts], dim=1)
    return {"output": out, "stem_features": z.flatten(0, 1), "flow": flow, "mask": mask, "warped_features": warped}


def _align(register: Callable[[Tensor], Tensor] | None, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Flow, warped features and mask of frames ``z`` (no stage 2: zero flow, masks of ones)."""
    if register is None:
        n, _, h, w = z.shape
        return z.new_zeros(n, 2, h, w), z, z.new_ones(n, 1, h, w)
    flow = register(z)
    warped, mask = flow_warp(z, flow)
    return flow, warped, mask


def frame_workers(threads: int) -> int:
    """How many frames go through stages 1 and 2 side by side: ``threads``, at most this process's CPUs."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (OSError, AttributeError):
        cpus = os.cpu_count() or 1
    return max(1, min(threads, cpus))


def run_side_by_side(
    first: Callable[[int], U], then: Callable[[int, U], T], starts: Sequence[int], workers: int
) -> list[T]:
    """``[then(i, first(i)) for i in starts]``, ``workers`` steps at a time on threads of one intra-op thread each.

    Steps that do not fill a round (the ninth frame of a burst on two threads)
    have their ``first`` part taken by the first worker free, and their
    ``then`` part run afterwards on the calling thread with its own thread
    count. Grad and inference mode are per thread: each step takes the
    caller's. The caller's thread count is restored afterwards.
    """
    side = len(starts) - len(starts) % workers
    if not side:
        return [then(i, first(i)) for i in starts]
    threads = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="burst-frames") as pool:
            rounds = [pool.submit(on_one_thread(lambda i: then(i, first(i))), i) for i in starts[:side]]
            early = [pool.submit(on_one_thread(first), i) for i in starts[side:]]
            results = [f.result() for f in rounds]
            tails = [f.result() for f in early]
    finally:
        torch.set_num_threads(threads)
    return results + [then(i, z) for i, z in zip(starts[side:], tails)]


def on_one_thread(step: Callable[..., T]) -> Callable[..., T]:
    """``step`` for a worker thread: one intra-op thread, and the calling thread's grad and inference mode."""
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def one(*args: object) -> T:
        torch.set_num_threads(1)
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return step(*args)

    return one


def _blocks_fast(blocks: nn.Sequential, x: Tensor, cast: Compute) -> Tensor:
    for block in blocks:
        x = convnext_fast(block, x, cast)
    return x


def _stem_fast(stem: Stem, x: Tensor, cast: Compute) -> Tensor:
    return _blocks_fast(stem.blocks, stem.patch(x), cast)


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
        up = wide.linear(level.upsample.proj, x.permute(0, 2, 3, 1)).permute(
            0, 3, 1, 2
        )  # a float32 product: see _merge_fast
        skip = cast.conv(level.skip_conv, torch.cat([F.pixel_shuffle(up, 2), feats[-2 - u]], dim=1)).to(cast.wide)
        x = _blocks_fast(level.blocks, skip, cast)
    return unet.conv_out(F.silu(unet.norm_out(x)))


def against_reference(
    reg: FlowRegistration | HomographyRegistration, ref: Tensor, cast: Compute
) -> Callable[[Tensor], Tensor]:
    """Stage 2 against the reference latent ``ref`` (B, C, h, w): a function of the frames' latents (B * n, C, h, w).

    The U-Net's first convolution reads concat(z_ref, z): its output is
    conv(z_ref, W[:, :C]) + conv(z, W[:, C:]) + b, and z_ref is the same for
    every frame of a burst, so its share is computed once, here, and each
    frame convolves only its own C channels.
    """
    unet: RegUNet = reg.unet
    conv: nn.Conv2d = unet.conv_in
    c = ref.shape[1]
    w_ref, w_frame = (
        conv.weight[:, :c].contiguous(),
        conv.weight[:, c:].to(cast.dtype, memory_format=torch.contiguous_format),
    )
    shared = conv._conv_forward(one_image_strides(ref), w_ref, conv.bias).unsqueeze(1)  # (B, 1, C0, h, w)

    def register(z: Tensor) -> Tensor:
        x = conv._conv_forward(one_image_strides(z).to(cast.dtype), w_frame, None).to(cast.wide)
        x.unflatten(0, (shared.shape[0], -1)).add_(shared)  # in place through a view: x keeps its strides
        if isinstance(reg, HomographyRegistration):
            return homography_flow(reg.homography_from(_unet_encode_fast(reg.unet, x, cast)), z)
        return _unet_fast(reg.unet, x, cast)

    return register


def one_image_strides(x: Tensor) -> Tensor:
    """``x`` (B, C, h, w), with a batch of one given the batch stride of a dense map (the same memory).

    A dimension of size one may carry any stride, and views that split and
    merge the batch leave it at C for a channels-last map; oneDNN then takes
    the map for planar and converts it. The dense stride keeps it channels-last.
    """
    if x.shape[0] != 1 or x.stride(0) == x[0].numel() or not x.is_contiguous(memory_format=torch.channels_last):
        return x
    return x.as_strided(x.shape, (x[0].numel(), *x.stride()[1:]))


def _merge_fast(merge: MergeModel, x: Tensor, cast: Compute) -> Tensor:
    """``merge(x)``: the 1x1 input projection is a float32 matrix product on the input read as (h*w, C) in place.

    This projection, like the U-Net's upsampling projection, stays a float32
    matrix product rather than a oneDNN 1x1 convolution, whose results with
    many input channels depend on the thread count.
    """
    b, _, h, w = x.shape
    x = Compute(cast.wide, cast.wide).linear(merge.conv_in, x.flatten(2).transpose(1, 2))  # (B, h*w, base)
    x = x.view(b, h, w, -1).permute(0, 3, 1, 2)
    for block in merge.blocks:
        x = cnrdb_fast(block, x, cast)
    return merge.conv_out(merge.unpatch(x))


class Fast:
    name = "fast"
    summary = "FlowCNRDB's CPU path: the same function reorganised for a CPU (FlowCNRDB variants, CPU, fp32 or bf16)"

    def unsupported(self, model: nn.Module, settings: Settings) -> str | None:
        if not isinstance(model, FlowCNRDB):
            return f"the fast backend serves FlowCNRDB variants only, not {type(model).__name__}: use eager, compile, onnxruntime or openvino"
        if settings.device.type != "cpu":
            return "the fast backend runs on a CPU only: use eager or compile on a GPU"
        if settings.precision not in (Precision.fp32, Precision.bf16):
            return f"the fast backend runs fp32 or bf16, not {settings.precision.value}"
        return None

    def prepare(self, model: nn.Module, settings: Settings, size: tuple[int, int]) -> Prepared:
        assert isinstance(model, FlowCNRDB)
        dtype = torch.bfloat16 if settings.precision is Precision.bf16 else None
        workers = frame_workers(settings.threads) if size[0] * size[1] >= SIDE_BY_SIDE_PIXELS else 1

        def run(x: Tensor) -> Tensor | dict[str, Tensor]:
            return fast_forward(model, x, dtype, workers)

        return Forward(run, settings.device, {"precision": settings.precision.value, "frame_workers": workers})
