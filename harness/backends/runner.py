"""The runner: a model prepared by a backend, its thread count set around each call, its first output gated.

:func:`prepare_runner` picks the backend, prepares the model and returns a
:class:`Runner`, a function of bursts. The first burst a non-reference
runner sees is also run by the model as written in IEEE float32 (the eager
backend, float32) and the two outputs go through the equivalence gate
(:mod:`harness.backends.gate`): a backend that fails it is refused before any
output is used. Every output is checked finite.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor, nn

from harness.backends.base import Prepared, Settings, torch_threads
from harness.backends.eager import reference_forward
from harness.backends.gate import GateResult, check, compare
from harness.backends.registry import choose_backend, default_threads
from harness.errors import HarnessError
from harness.foreign import their_code
from harness.options import Precision


class Runner:
    """``runner(burst)``: the prepared model's float32 output on the CPU, gated on the first call, always finite."""

    def __init__(
        self, name: str, prepared: Prepared, model: nn.Module, settings: Settings, setup_seconds: float
    ) -> None:
        self.name, self.prepared, self.model, self.settings = name, prepared, model, settings
        self.setup_seconds = setup_seconds
        self.gate: GateResult | None = None
        self.gated = not (name == "eager" and settings.precision is Precision.fp32)  # eager float32 is the reference

    def __call__(self, burst: Tensor) -> Tensor:
        with torch_threads(self.settings.threads), their_code("forward pass"):
            out = self.prepared(burst)
            if self.gated and self.gate is None:
                self.gate = check(compare(self.name, self.settings.precision, self.reference(burst), out))
        if not torch.isfinite(out).all():
            raise HarnessError(
                f"backend {self.name} ({self.settings.precision.value}): the model produced non-finite values"
            )
        return out

    def reference(self, burst: Tensor) -> Tensor:
        """The model as written, IEEE float32, on the runner's device and threads."""
        return reference_forward(self.model, self.settings.device)(burst)

    def describe(self) -> dict[str, Any]:
        """What ran: backend, precision, threads, set-up time, the backend's own details and the gate's verdict."""
        return {
            "backend": self.name,
            "precision": self.settings.precision.value,
            "threads": self.settings.threads,
            "device": str(self.settings.device),
            "setup_seconds": round(self.setup_seconds, 3),
            **self.prepared.describe(),
            "gate": None if self.gate is None else self.gate.as_dict(),
        }


def prepare_runner(
    model: nn.Module,
    backend: str,
    device: torch.device,
    precision: Precision,
    size: tuple[int, int],
    threads: int | None = None,
) -> Runner:
    """``model`` (in eval mode, on ``device``) prepared by ``backend`` (or ``auto``) for bursts of ``size``."""
    settings = Settings(device, precision, threads or default_threads())
    chosen = choose_backend(backend, model, settings)
    t0 = time.perf_counter()
    with torch_threads(settings.threads), their_code("forward pass, traced by the backend"):
        prepared = chosen.prepare(model, settings, size)
    return Runner(chosen.name, prepared, model, settings, time.perf_counter() - t0)
