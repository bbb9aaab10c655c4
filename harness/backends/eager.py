"""``eager``: the model as written, in PyTorch; the reference every other backend is held to."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from harness.backends.base import Forward, Prepared, Settings
from harness.backends.reduced import bfloat16_forward
from harness.inference import precision_mode
from harness.options import Precision


def reference_forward(model: nn.Module, device: torch.device) -> Forward:
    """The model as written in IEEE float32 on ``device``: what the equivalence gate compares with."""

    def run(x: Tensor) -> Any:
        with precision_mode(Precision.fp32, device):
            return model(x)

    return Forward(run, device, {"precision": "fp32"})


class Eager:
    name = "eager"
    summary = "the model as written; bf16 on a CPU: a bfloat16 channels-last copy with float32 islands"

    def unsupported(self, model: nn.Module, settings: Settings) -> str | None:
        return None

    def prepare(self, model: nn.Module, settings: Settings, size: tuple[int, int]) -> Prepared:
        device, precision = settings.device, settings.precision
        if precision is Precision.bf16 and device.type == "cpu":
            return Forward(
                bfloat16_forward(model), device, {"precision": "bf16", "layout": "channels_last", "islands": "float32"}
            )

        def run(x: Tensor) -> Any:
            with precision_mode(precision, device):
                return model(x)

        return Forward(run, device, {"precision": precision.value})
