"""``harness export``: a model exported for a deployment runtime, with its parity against the model as written.

ONNX (opset :data:`harness.backends.exported.OPSET`) or OpenVINO IR (``.xml`` and ``.bin``), for bursts of one
fixed size; the exported file is run by its runtime on one seeded random burst and compared with the model as
written in float32 (largest absolute difference, and PSNR of the clipped outputs). Written under a
temporary name and renamed: nothing half-written. The parity is of the written file itself.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.backends.base import Settings, torch_threads
from harness.backends.eager import reference_forward
from harness.backends.exported import (
    OnnxRuntime,
    OpenVino,
    convert_openvino,
    export_onnx,
    onnx_runtime,
    openvino_runtime,
)
from harness.backends.registry import default_threads
from harness.errors import HarnessError
from harness.options import Format, Precision
from harness.registry import model_multiple


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float
    psnr_db: float

    def line(self) -> str:
        psnr = "inf" if math.isinf(self.psnr_db) else f"{self.psnr_db:.2f}"
        return f"parity against eager float32 on one burst: max |diff| {self.max_abs_diff:.3g}, PSNR {psnr} dB"


def parity(reference: torch.Tensor, candidate: torch.Tensor) -> Parity:
    """Largest absolute difference, and PSNR of the outputs clipped to [0, 1] (data range 1)."""
    diff = float((candidate.double() - reference.double()).abs().max())
    mse = float(((candidate.clamp(0, 1).double() - reference.clamp(0, 1).double()) ** 2).mean())
    return Parity(diff, math.inf if mse == 0 else 10 * math.log10(1 / mse))


def export_model(
    model: nn.Module, fmt: Format, size: tuple[int, int], out: Path, threads: int | None = None
) -> tuple[list[Path], Parity]:
    """Write ``model`` (eval mode) in ``fmt`` for (1, 9, H, W) bursts to ``out`` (``.onnx``, or ``.xml`` beside its ``.bin``)."""
    multiple = model_multiple(model)
    if size[0] % multiple or size[1] % multiple:
        raise HarnessError(f"--size {size[0]}x{size[1]}: H and W must be multiples of {multiple} for this model")
    settings = Settings(torch.device("cpu"), Precision.fp32, threads or default_threads())
    backend = OnnxRuntime() if fmt is Format.onnx else OpenVino()
    reason = backend.unsupported(model, settings)
    if reason is not None:
        raise HarnessError(f"--format {fmt.value}: {reason}")
    out.parent.mkdir(parents=True, exist_ok=True)
    x = torch.rand(1, 9, *size, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory(prefix=".harness-export-", dir=out.parent) as tmp, torch_threads(settings.threads):
        written = _write(model, fmt, size, Path(tmp) / out.name)
        if fmt is Format.onnx:
            runtime = onnx_runtime(written[0], settings.threads)
        else:
            runtime = openvino_runtime(str(written[0]), Precision.fp32, settings.threads)
        got = torch.from_numpy(np.asarray(runtime(x.numpy()))).float()  # the written file itself, run by its runtime
        result = parity(reference_forward(model, settings.device)(x), got)
        final = [out.parent / p.name for p in written]
        for src, dst in zip(written, final):
            shutil.move(src, dst)
    return final, result


def _write(model: nn.Module, fmt: Format, size: tuple[int, int], path: Path) -> list[Path]:
    if fmt is Format.onnx:
        return [export_onnx(model, size, path)]
    import openvino as ov

    xml = path.with_suffix(".xml")
    ov.save_model(convert_openvino(model, size), str(xml))
    return [xml, xml.with_suffix(".bin")]


def describe(paths: list[Path], result: Parity) -> dict[str, Any]:
    return {"files": [str(p) for p in paths], "max_abs_diff": result.max_abs_diff, "psnr_db": result.psnr_db}
