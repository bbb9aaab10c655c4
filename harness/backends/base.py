"""The one interface every inference backend implements, and the settings a runner gives it.

A backend prepares a model for a device, a precision, a thread count and an
input size (:meth:`Backend.prepare`, where exporting or compiling happens) and
returns a :class:`Prepared`: a callable from a (B, 9, H, W) float32 burst on
the CPU to the model's (B, 3, H, W) output in float32 on the CPU, that
describes itself. Backends never change process state: the runner
(:mod:`harness.backends.runner`) sets the thread count around each call and
restores it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from harness.errors import HarnessError
from harness.options import Precision


@dataclass(frozen=True)
class Settings:
    """What a backend is prepared for: ``threads`` is the CPU's intra-op thread count during a call."""

    device: torch.device
    precision: Precision
    threads: int


class Prepared(Protocol):
    def __call__(self, burst: Tensor) -> Tensor: ...

    def describe(self) -> dict[str, Any]: ...


class Backend(Protocol):
    name: str
    summary: str

    def unsupported(self, model: nn.Module, settings: Settings) -> str | None:
        """Why this backend cannot run ``model`` with ``settings`` (one line), or None."""
        ...

    def prepare(self, model: nn.Module, settings: Settings, size: tuple[int, int]) -> Prepared:
        """``model`` made ready for bursts of ``size`` (H, W); other sizes may be prepared on first use."""
        ...


class BackendUnavailable(HarnessError):
    """A backend that cannot serve this model or these settings (exit code 2)."""


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` inside the block, the caller's restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Forward:
    """A :class:`Prepared` from a plain function of the burst (already on the device and in its dtype)."""

    def __init__(self, fn: Any, device: torch.device, details: dict[str, Any]) -> None:
        self.fn, self.device, self.details = fn, device, details

    def __call__(self, burst: Tensor) -> Tensor:
        with torch.inference_mode():
            out = self.fn(burst.to(self.device))
        if not isinstance(out, Tensor):
            raise HarnessError(f"the model returned {type(out).__name__}, not a tensor")
        return out.float().cpu()

    def describe(self) -> dict[str, Any]:
        return dict(self.details)
