"""The equivalence gate: a backend's output on the first burst against the model as written, in float32.

Float32: the largest absolute difference at most :data:`FLOAT32_TOLERANCE`.
Reduced precision: the two outputs as 8-bit images (clipped to [0, 1],
x 255, floored, as the server reads them) within one level on at least
:data:`REDUCED_SHARE` of the values. Never a non-finite value. A failure is
one line naming the backend, the difference and the tolerance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from harness.errors import CheckFailed
from harness.options import Precision

FLOAT32_TOLERANCE = 1e-4
REDUCED_SHARE = 0.99


class NotEquivalent(CheckFailed):
    """A backend whose output is not the model's (exit code 1)."""


@dataclass(frozen=True)
class GateResult:
    backend: str
    precision: str
    max_abs_diff: float
    within_one_level: float  # share of 8-bit values within one level of the reference's
    passed: bool
    tolerance: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def eight_bit(x: Tensor) -> Tensor:
    return (x.clamp(0, 1) * 255).floor()


def compare(backend: str, precision: Precision, reference: Tensor, candidate: Tensor) -> GateResult:
    """How ``candidate`` (the backend's output) stands against ``reference`` (eager float32)."""
    finite = bool(torch.isfinite(candidate).all())
    if candidate.shape != reference.shape:
        return GateResult(backend, precision.value, float("inf"), 0.0, False, f"shape {tuple(reference.shape)}")
    diff = float((candidate.double() - reference.double()).abs().max()) if finite else float("inf")
    close = float(((eight_bit(candidate) - eight_bit(reference)).abs() <= 1).double().mean()) if finite else 0.0
    if precision is Precision.fp32:
        return GateResult(
            backend,
            precision.value,
            diff,
            close,
            finite and diff <= FLOAT32_TOLERANCE,
            f"max |diff| <= {FLOAT32_TOLERANCE:g}",
        )
    return GateResult(
        backend,
        precision.value,
        diff,
        close,
        finite and close >= REDUCED_SHARE,
        f">= {REDUCED_SHARE:.0%} of 8-bit values within one level",
    )


def check(result: GateResult) -> GateResult:
    """``result``, or :class:`NotEquivalent` in one line where it failed."""
    if not result.passed:
        got = (
            "non-finite values"
            if result.max_abs_diff == float("inf")
            else (
                f"max |diff| {result.max_abs_diff:.3g}, {result.within_one_level:.2%} of 8-bit values within one level"
            )
        )
        raise NotEquivalent(
            f"backend {result.backend} ({result.precision}) is not equivalent to eager float32 on the first burst: "
            f"{got}; the gate needs {result.tolerance}"
        )
    return result
