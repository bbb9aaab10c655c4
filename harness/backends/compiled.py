"""``compile``: ``torch.compile`` with Inductor, parameters frozen as constants for inference, for any model.

Compilation happens in :meth:`Compile.prepare` for the prepared size (and on
first use for another); Inductor's on-disk caches serve a later process's
compilation of the same model and size. bf16 compiles the bfloat16
channels-last copy with its float32 islands (:mod:`harness.backends.reduced`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from harness.backends.base import Forward, Prepared, Settings
from harness.backends.reduced import bfloat16_forward
from harness.inference import precision_mode
from harness.options import Precision


class Compile:
    name = "compile"
    summary = "torch.compile (Inductor, frozen parameters) of any model"

    def unsupported(self, model: nn.Module, settings: Settings) -> str | None:
        return None

    def prepare(self, model: nn.Module, settings: Settings, size: tuple[int, int]) -> Prepared:
        import torch._inductor.config as inductor

        device, precision = settings.device, settings.precision
        if precision is Precision.bf16 and device.type == "cpu":
            compiled = torch.compile(bfloat16_forward(model), dynamic=False)
        else:
            compiled = torch.compile(model, dynamic=False)

        def run(x: Tensor) -> Any:
            with (
                inductor.patch(freezing=True),
                precision_mode(Precision.fp32 if device.type == "cpu" else precision, device),
            ):
                return compiled(x)

        prepared = Forward(run, device, {"precision": precision.value, "inductor": "freezing"})
        prepared(torch.zeros(1, 9, *size))  # compile now, for this size
        return prepared
