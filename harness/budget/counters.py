"""The FLOP counters, each converted to MACs with its native figure kept beside it.

Where a counter can run on abstract tensors (``FlopCounterMode``, ptflops'
``aten`` backend, the analytic counter) the full-size figure is measured
exactly without materialising activations: the model runs on fake CPU tensors
(:func:`abstract_cpu`), shapes without storage, so code that asks for its
input's device (autocast on it, say) sees a CPU. fvcore and ptflops' ``pytorch``
backend need a real forward pass, so at large sizes they are *derived*: the
count is measured at two small sizes on the same code path (every windowed
GRN windowed, see :func:`fit_sizes`), fitted exactly (rational arithmetic) as
``a * pixels + b``, and the fit is verified exactly at a third size of another
aspect ratio before it is used. A fit that does not verify is an error, never
a silent multiplication.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import torch
from torch import nn

from harness.challenge import NUM_FRAMES
from harness.errors import HarnessError
from harness.registry import model_multiple

DIRECT_LIMIT = 256 * 512  # pixels up to which the real-forward counters are run directly


@dataclass
class Measured:
    macs: int
    reported: float
    unit: str
    extrapolated: bool
    how: str
    by_operator: dict[str, int] = field(default_factory=dict)
    unsupported: dict[str, int] = field(default_factory=dict)


def counting_copy(model: nn.Module, device: str = "cpu") -> nn.Module:
    """A copy to count: on ``device``, in eval mode (the model as written is the computation as published)."""
    return copy.deepcopy(model).to(device).eval()


def fit_sizes(model: nn.Module) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Two fitting sizes and a verification size, all small and on the full-size code path.

    A GRN is windowed when the width of its map exceeds its window; every
    window is train_size / (2 * stride), so a width above ``train_size``
    windows every GRN, as at 768 x 1536. A model without a configuration
    (somebody else's code) gets sizes that are multiples of 64 and wider than
    the challenge's 256-pixel training crops, which its strides and windows
    are likely built around.
    """
    config = getattr(model, "config", None)
    if config is None:
        return (64, 320), (128, 320), (64, 640)
    m = model_multiple(model)
    train_size = getattr(config, "train_size", 0)
    w = (train_size // m + 1) * m if train_size else 4 * m
    h = max(m, 32 // m * m)
    return (h, w), (2 * h, w), (h, 2 * w)


def derive(
    measure: Callable[[int, int], dict[str, int]], size: tuple[int, int], model: nn.Module
) -> tuple[dict[str, int], str]:
    """Per-key counts at ``size`` from an exact affine fit in pixels, verified at a third size."""
    (h1, w1), (h2, w2), (h3, w3) = fit_sizes(model)
    c1, c2, c3 = measure(h1, w1), measure(h2, w2), measure(h3, w3)
    p1, p2, p3 = h1 * w1, h2 * w2, h3 * w3
    out: dict[str, int] = {}
    for key in set(c1) | set(c2) | set(c3):
        a = Fraction(c2.get(key, 0) - c1.get(key, 0), p2 - p1)
        b = c1.get(key, 0) - a * p1
        if a * p3 + b != c3.get(key, 0):
            raise HarnessError(f"count of {key!r} is not affine in the pixel count; refusing to extrapolate")
        value = a * size[0] * size[1] + b
        if value.denominator != 1:
            raise HarnessError(f"count of {key!r} extrapolates to a fraction; refusing to extrapolate")
        out[key] = int(value)
    how = f"derived: exact fit a*pixels+b at {h1}x{w1} and {h2}x{w2}, verified exactly at {h3}x{w3}"
    return out, how


def _needs_derivation(size: tuple[int, int]) -> bool:
    return size[0] * size[1] > DIRECT_LIMIT


def fvcore_count(model: nn.Module, size: tuple[int, int], channels: int = NUM_FRAMES) -> Measured:
    """fvcore ``FlopCountAnalysis``, the official counter (its 'flop' is one MAC)."""
    from fvcore.nn import FlopCountAnalysis

    unsupported: dict[str, int] = {}

    def measure(h: int, w: int) -> dict[str, int]:
        m = counting_copy(model)
        fa = FlopCountAnalysis(m, torch.ones(1, channels, h, w))
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        logging.getLogger("fvcore").setLevel(logging.ERROR)
        with torch.no_grad():
            counts = {k: int(v) for k, v in fa.by_operator().items()}
        unsupported.update({k: int(v) for k, v in fa.unsupported_ops().items()})
        return counts

    if _needs_derivation(size):
        by_op, how = derive(measure, size, model)
    else:
        by_op, how = measure(*size), f"measured at {size[0]}x{size[1]}"
    total = sum(by_op.values())
    return Measured(total, total, "fvcore flops (1 per MAC)", _needs_derivation(size), how, by_op, unsupported)


def ptflops_pytorch_count(model: nn.Module, size: tuple[int, int], channels: int = NUM_FRAMES) -> Measured:
    """ptflops, module-hook backend, without the functional patches that double-count activations."""
    from ptflops import get_model_complexity_info

    def measure(h: int, w: int) -> dict[str, int]:
        m = counting_copy(model)
        with torch.no_grad():
            macs, _ = get_model_complexity_info(
                m,
                (channels, h, w),
                as_strings=False,
                backend="pytorch",
                print_per_layer_stat=False,
                backend_specific_config={"count_functional": False},
                ost=io.StringIO(),
            )
        if macs is None:
            raise HarnessError("ptflops (pytorch backend) failed on this model")
        return {"total": int(macs)}

    if _needs_derivation(size):
        counts, how = derive(measure, size, model)
    else:
        counts, how = measure(*size), f"measured at {size[0]}x{size[1]}"
    return Measured(counts["total"], counts["total"], "MACs", _needs_derivation(size), how)


@contextlib.contextmanager
def abstract_cpu() -> Iterator[None]:
    """Tensors made inside the block are fake CPU tensors: every operator runs for its shapes alone, with no
    memory and no arithmetic, and real parameters are taken as they are."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
        yield


def ptflops_aten_count(model: nn.Module, size: tuple[int, int], channels: int = NUM_FRAMES) -> Measured:
    """ptflops, aten backend, run on abstract CPU tensors at the full size."""
    from ptflops import get_model_complexity_info

    m = counting_copy(model)
    shape = (channels, *size)
    with abstract_cpu():
        macs, _ = get_model_complexity_info(
            m,
            shape,
            as_strings=False,
            backend="aten",
            print_per_layer_stat=False,
            verbose=False,
            ost=io.StringIO(),
            input_constructor=lambda _: torch.empty(1, *shape),
        )
    if macs is None:
        raise HarnessError("ptflops (aten backend) failed on this model")
    return Measured(int(macs), int(macs), "MACs", False, f"measured at {size[0]}x{size[1]} on abstract tensors")


def flop_counter_mode_count(model: nn.Module, size: tuple[int, int], channels: int = NUM_FRAMES) -> Measured:
    """``torch.utils.flop_counter.FlopCounterMode`` on abstract CPU tensors (2 FLOPs per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    m = counting_copy(model)
    counter = FlopCounterMode(display=False)
    with abstract_cpu(), counter:
        m(torch.empty(1, channels, *size))
    flops = int(counter.get_total_flops())
    by_op = {str(op).split(".")[1]: int(v) // 2 for op, v in counter.get_flop_counts().get("Global", {}).items()}
    return Measured(
        flops // 2, flops, "FLOPs (2 per MAC)", False, f"measured at {size[0]}x{size[1]} on abstract tensors", by_op
    )
