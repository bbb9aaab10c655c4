"""``onnxruntime`` and ``openvino``: the model exported, then run by the official runtimes, for any model that exports.

The export is ONNX through torch's TorchScript-based exporter (opset
:data:`OPSET`: ``grid_sample`` needs 16), batch one, fixed H x W; ONNX Runtime
runs the file with ``threads`` intra-op threads; OpenVINO converts the
PyTorch model itself (``openvino.convert_model``) and compiles it for the CPU
with an explicit inference precision (float32, or its bfloat16 hint for
bf16). An export failure is one line naming the operator where the exporter
names one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from harness.backends.base import Settings
from harness.errors import HarnessError
from harness.options import Precision

OPSET = 17


def _failure(what: str, exc: BaseException) -> HarnessError:
    text = str(exc)
    op = re.search(r"\b(aten::[A-Za-z0-9_.]+)", text) or re.search(r"operator [`'\"]?([A-Za-z0-9_:.]+)", text)
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return HarnessError(f"{what} failed: " + (f"operator {op.group(1)} is not supported" if op else first[:200]))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Warnings and whatever the exporter prints, from Python or C++ (graphs, progress), kept off the terminal."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.dup2(null.fileno(), 1), os.dup2(null.fileno(), 2)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        for fd, copy in ((1, saved[0]), (2, saved[1])):
            os.dup2(copy, fd)
            os.close(copy)


def export_onnx(model: nn.Module, size: tuple[int, int], path: Path) -> Path:
    """``model`` exported to ONNX at ``path`` for (1, 9, H, W) bursts."""
    example = torch.zeros(1, 9, *size)
    try:
        with _quiet(), torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                model,
                (example,),
                str(path),
                opset_version=OPSET,
                dynamo=False,
                input_names=["burst"],
                output_names=["rgb"],
            )
    except Exception as exc:  # the exporter raises anything from anywhere: one line naming the operator
        raise _failure("ONNX export", exc) from None
    return path


def convert_openvino(model: nn.Module, size: tuple[int, int]) -> Any:
    """``model`` converted by ``openvino.convert_model`` for (1, 9, H, W) bursts."""
    import openvino as ov

    try:
        with _quiet(), torch.inference_mode(False), torch.no_grad():
            return ov.convert_model(model, example_input=torch.zeros(1, 9, *size))
    except Exception as exc:  # the converter raises anything from anywhere: one line for the user
        raise _failure("OpenVINO conversion", exc) from None


Runtime = Callable[[np.ndarray], np.ndarray]
"""A compiled model of one runtime: a (1, 9, H, W) float32 array -> its (1, 3, H, W) output."""


def onnx_runtime(path: Path, threads: int) -> Runtime:
    """The ONNX file at ``path`` in an ONNX Runtime CPU session with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"burst": x})[0]


def openvino_runtime(model: Any, precision: Precision, threads: int) -> Runtime:
    """An OpenVINO model (converted, or the path of its IR) compiled for the CPU with an explicit inference precision."""
    import openvino as ov

    config = {
        "INFERENCE_PRECISION_HINT": "bf16" if precision is Precision.bf16 else "f32",
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
    }
    compiled = ov.Core().compile_model(model, "CPU", config)
    return lambda x: compiled(x)[0]


class PerSize:
    """A prepared runtime per (H, W), made on first use; a batch runs burst by burst. ``keep`` holds what the
    runtimes need alive (their files)."""

    def __init__(self, make: Callable[[tuple[int, int]], Runtime], details: dict[str, Any], keep: Any = None) -> None:
        self.make, self.details, self.keep = make, details, keep
        self.runs: dict[tuple[int, int], Runtime] = {}

    def __call__(self, burst: Tensor) -> Tensor:
        size = (int(burst.shape[-2]), int(burst.shape[-1]))
        if size not in self.runs:
            self.runs[size] = self.make(size)
        run = self.runs[size]
        outs = [
            torch.from_numpy(np.asarray(run(burst[i : i + 1].float().contiguous().numpy())))
            for i in range(burst.shape[0])
        ]
        return torch.cat(outs).float()

    def describe(self) -> dict[str, Any]:
        return dict(self.details)


def _runtime_unsupported(name: str, settings: Settings, precisions: tuple[Precision, ...], why: str) -> str | None:
    """Why the CPU runtime ``name`` (its package's name too) cannot run with ``settings``, or None."""
    if settings.device.type != "cpu":
        return f"the {name} backend runs on a CPU here"
    if settings.precision not in precisions:
        return f"the {name} backend runs {' or '.join(p.value for p in precisions)} only{why}"
    if importlib.util.find_spec(name) is None:
        return f"the {name} backend needs the {name} package (pip install {name})"
    return None


class OnnxRuntime:
    name = "onnxruntime"
    summary = "ONNX export run by ONNX Runtime's CPU provider (float32)"

    def unsupported(self, model: nn.Module, settings: Settings) -> str | None:
        why = " (its CPU provider has no bfloat16 convolutions): use fast, eager or compile for bf16"
        return _runtime_unsupported(self.name, settings, (Precision.fp32,), why)

    def prepare(self, model: nn.Module, settings: Settings, size: tuple[int, int]) -> PerSize:
        import onnxruntime as ort

        folder = tempfile.TemporaryDirectory(prefix="harness-onnx-")

        def make(hw: tuple[int, int]) -> Runtime:
            path = export_onnx(model, hw, Path(folder.name) / f"model-{hw[0]}x{hw[1]}.onnx")
            return onnx_runtime(path, settings.threads)

        prepared = PerSize(make, {"precision": "fp32", "opset": OPSET, "onnxruntime": ort.__version__}, keep=folder)
        prepared.runs[size] = make(size)
        return prepared


class OpenVino:
    name = "openvino"
    summary = "openvino.convert_model run by OpenVINO's CPU plugin (f32, or its bf16 inference precision)"

    def unsupported(self, model: nn.Module, settings: Settings) -> str | None:
        return _runtime_unsupported(self.name, settings, (Precision.fp32, Precision.bf16), "")

    def prepare(self, model: nn.Module, settings: Settings, size: tuple[int, int]) -> PerSize:
        import openvino as ov

        hint = "bf16" if settings.precision is Precision.bf16 else "f32"

        def make(hw: tuple[int, int]) -> Runtime:
            return openvino_runtime(convert_openvino(model, hw), settings.precision, settings.threads)

        prepared = PerSize(
            make, {"precision": settings.precision.value, "inference_precision": hint, "openvino": ov.__version__}
        )
        prepared.runs[size] = make(size)
        return prepared
