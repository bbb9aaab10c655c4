"""Running a model over one burst: device, precision, full image or tiles."""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.errors import HarnessError
from harness.options import Device, Precision


def resolve_device(name: Device | str) -> torch.device:
    try:
        choice = Device(name)
    except ValueError:
        raise HarnessError(f"--device must be auto, cpu or cuda, not {name!r}") from None
    if choice is Device.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice is Device.cuda and not torch.cuda.is_available():
        raise HarnessError("--device cuda: no CUDA device is available")
    return torch.device(choice.value)


def describe_gpu(device: torch.device | None) -> dict[str, Any] | None:
    """A CUDA ``device``'s name, memory, compute capability and CUDA version (None for any other device, or none)."""
    if device is None or device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    return {
        "name": props.name,
        "memory_mb": round(props.total_memory / 2**20),
        "capability": f"{props.major}.{props.minor}",
        "cuda": torch.version.cuda,
    }


def peak_memory_mb(device: torch.device) -> float:
    """This run's memory high-water mark in MiB: ``max_memory_allocated`` on a CUDA ``device``; on the CPU the
    larger of this process's resident high-water mark (``VmHWM``, Linux) and its largest child's (``ru_maxrss``)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    try:
        status = Path("/proc/self/status").read_text()
        own = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024
    except (OSError, StopIteration):
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return max(own, children)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); emulated bfloat16 is slower than float32."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def check_precision(precision: Precision, device: torch.device) -> None:
    """Refuse reduced precision where the hardware lacks it, in one line."""
    if precision is Precision.bf16 and device.type == "cpu" and not cpu_has_bf16():
        raise HarnessError(
            "--precision bf16: this CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX); use fp32"
        )
    if precision is Precision.bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise HarnessError("--precision bf16: this GPU has no bfloat16 arithmetic; use fp32")
    if precision is Precision.fp16 and device.type != "cuda":
        raise HarnessError("--precision fp16: float16 autocast is for GPUs; on a CPU use bf16 or fp32")
    if precision is Precision.tf32 and device.type != "cuda":
        raise HarnessError("--precision tf32: TF32 tensor cores are a GPU's; on a CPU use fp32 or bf16")


@contextlib.contextmanager
def cuda_tf32(enabled: bool) -> Iterator[None]:
    """cuDNN convolutions and cuBLAS matrix products on TF32 tensor cores (``enabled``) or in IEEE float32
    inside the block; the previous settings are restored after it."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    flags: list[tuple[Any, str, Any]]
    if conv is not None and hasattr(conv, "fp32_precision"):  # torch >= 2.9; mixing it with allow_tf32 is an error
        mode = "tf32" if enabled else "ieee"
        flags = [(conv, "fp32_precision", mode), (torch.backends.cuda.matmul, "fp32_precision", mode)]
    else:
        flags = [(torch.backends.cudnn, "allow_tf32", enabled), (torch.backends.cuda.matmul, "allow_tf32", enabled)]
    saved = [getattr(owner, name) for owner, name, _ in flags]
    try:
        for owner, name, value in flags:
            setattr(owner, name, value)
        yield
    finally:
        for (owner, name, _), value in zip(flags, saved):
            setattr(owner, name, value)


@contextlib.contextmanager
def precision_mode(precision: Precision, device: torch.device) -> Iterator[None]:
    """Autocast and tensor-core settings of ``precision`` inside the block, restored after it.

    fp32 is IEEE float32 (on a GPU too); tf32 turns on TF32 tensor cores
    (GPUs); fp16 and bf16 are autocast. On a CPU the backends give bf16 its
    own treatment (:mod:`harness.backends`); this is what the eager backend
    uses on a GPU.
    """
    tensor_cores = cuda_tf32(precision is Precision.tf32) if device.type == "cuda" else contextlib.nullcontext()
    dtype = {Precision.fp16: torch.float16, Precision.bf16: torch.bfloat16}.get(precision)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with tensor_cores, autocast:
        yield


@dataclass(frozen=True)
class Tiling:
    """Tiles of ``tile`` x ``tile`` pixels overlapping by ``overlap``; ``tile=0`` is the full image.

    Each output pixel is taken from the one tile in which it lies farthest from
    an inner tile edge (the tiles are cut in the middle of their overlaps), so
    every pixel is at least ``overlap // 2`` away from the edge of the tile
    that computed it: a model whose receptive field reaches no farther than
    that gives exactly the full-image result.
    """

    tile: int = 0
    overlap: int = 0
    batch: int = 4  # tiles per forward pass: fewer, larger operations, at batch x one tile's memory

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

    def spans(self, size: int, multiple: int) -> list[tuple[int, int, int]]:
        """(tile start, first kept pixel, end of kept pixels) of every tile along one axis."""
        tile = min(self.tile, size)
        starts = Tiling(tile, self.overlap).starts(size, multiple)
        cuts = [0] + [(b + a + tile) // 2 for a, b in zip(starts, starts[1:])] + [size]
        return [(s, lo, hi) for s, lo, hi in zip(starts, cuts[:-1], cuts[1:])]


BurstFn = Callable[[torch.Tensor], torch.Tensor]
"""A prepared model: a (B, 9, H, W) float32 burst on the CPU -> its (B, 3, H, W) float32 output on the CPU."""


def _checked(out: object, x: torch.Tensor) -> torch.Tensor:
    """The model's output, refused unless it is (B, 3, H, W) for a (B, 9, H, W) input."""
    b, _, h, w = x.shape
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (b, 3, h, w):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise HarnessError(
            f"the model's output is {got} for an input of {tuple(x.shape)}; expected {(b, 3, h, w)} (RGB)"
        )
    return out


def run_model(forward: BurstFn, frames: torch.Tensor, multiple: int, tiling: Tiling = Tiling()) -> torch.Tensor:
    """(1, 9, H, W) frames -> (3, H, W) float32 output on the CPU; tiles go through ``forward`` ``tiling.batch`` at a time."""
    if not tiling.tile:
        return _checked(forward(frames), frames)[0]
    _, _, h, w = frames.shape
    th, tw = min(tiling.tile, h), min(tiling.tile, w)
    places = [
        (y, y0, y1, x, x0, x1) for y, y0, y1 in tiling.spans(h, multiple) for x, x0, x1 in tiling.spans(w, multiple)
    ]
    out = torch.empty(3, h, w)
    for i in range(0, len(places), max(tiling.batch, 1)):
        group = places[i : i + max(tiling.batch, 1)]
        tiles = torch.cat([frames[:, :, y : y + th, x : x + tw] for y, _, _, x, _, _ in group])
        parts = _checked(forward(tiles), tiles)
        for part, (y, y0, y1, x, x0, x1) in zip(parts, group):
            out[:, y0:y1, x0:x1] = part[:, y0 - y : y1 - y, x0 - x : x1 - x]
    return out


def to_hwc(out: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor -> (H, W, 3) float32 array."""
    return np.ascontiguousarray(out.permute(1, 2, 0).numpy())
