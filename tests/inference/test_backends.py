"""Backends: one interface, the equivalence gate, auto's choice, what runs record, threads left as found."""

from __future__ import annotations

import json

import pytest
import torch
from clihelp import invoke, one_error
from torch import Tensor, nn

from harness import create_model
from harness.backends import BACKENDS, Settings, choose_backend, prepare_runner, register_backend
from harness.backends.base import Forward
from harness.backends.reduced import Float32Islands, bfloat16_forward
from harness.inference import cpu_has_bf16
from harness.options import Precision

CPU = torch.device("cpu")


def _seeded(name: str, std: float = 0.02) -> nn.Module:
    model = create_model(name).eval()
    torch.manual_seed(0)
    for p in model.parameters():
        nn.init.normal_(p, std=std)
    return model


@pytest.mark.parametrize("backend", ["eager", "compile", "onnxruntime", "openvino"])
def test_every_backend_runs_the_unet_within_the_float32_gate(backend):
    model = _seeded("unet_baseline")
    runner = prepare_runner(model, backend, CPU, Precision.fp32, (64, 128), threads=2)
    x = torch.rand(1, 9, 64, 128)
    out = runner(x)
    with torch.inference_mode():
        want = model(x)
    assert out.shape == (1, 3, 64, 128) and (out - want).abs().max() <= 1e-4
    described = runner.describe()
    assert described["backend"] == backend and described["threads"] == 2
    assert (described["gate"] is None) == (backend == "eager") and (backend == "eager" or described["gate"]["passed"])


def test_bfloat16_channels_last_keeps_the_warp_and_norms_in_float32_and_passes_the_gate():
    if not cpu_has_bf16():
        pytest.skip("this CPU has no native bfloat16")
    model = _seeded("flowcnrdb_tiny", std=0.05)
    x = torch.rand(1, 9, 64, 128)
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: dict[str, set[torch.dtype]] = {}

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            first = next((a for a in args if isinstance(a, Tensor) and a.is_floating_point()), None)
            if first is not None:
                seen.setdefault(func.__name__.split(".")[0], set()).add(first.dtype)
            return func(*args, **(kwargs or {}))

    forward = bfloat16_forward(model)
    with torch.inference_mode(), Record():
        forward(x)
    assert seen["conv2d"] == {torch.bfloat16}  # every convolution in bfloat16
    for op in ("grid_sampler", "layer_norm", "cumsum"):
        assert seen[op] == {torch.float32}, op
    assert next(model.parameters()).dtype == torch.float32  # the model itself untouched
    runner = prepare_runner(model, "eager", CPU, Precision.bf16, (64, 128), threads=2)
    runner(x)
    assert runner.describe()["gate"]["passed"] and runner.describe()["gate"]["within_one_level"] >= 0.99


def test_islands_cast_results_back_and_leave_float32_alone():
    x = torch.rand(2, 4, 8, 8).bfloat16()
    with Float32Islands():
        normed = nn.functional.layer_norm(x, (8,))
        plain = nn.functional.layer_norm(x.float(), (8,))
    assert normed.dtype == torch.bfloat16 and plain.dtype == torch.float32
    assert torch.equal(normed, nn.functional.layer_norm(x.float(), (8,)).bfloat16())


def test_auto_takes_fast_for_flowcnrdb_on_a_cpu_and_eager_otherwise():
    settings = Settings(CPU, Precision.fp32, 1)
    assert choose_backend("auto", create_model("flowcnrdb_tiny"), settings).name == "fast"
    assert choose_backend("auto", create_model("unet_baseline"), settings).name == "eager"
    with pytest.raises(Exception, match="fast backend serves FlowCNRDB variants only"):
        choose_backend("fast", create_model("unet_baseline"), settings)


class Perturbed:
    """A backend that is eager plus a little: what the gate is there to refuse."""

    summary = "eager, perturbed (a test's)"

    def __init__(self, name: str, delta: float) -> None:
        self.name, self.delta = name, delta

    def unsupported(self, model: nn.Module, settings: Settings) -> str | None:
        return None

    def prepare(self, model: nn.Module, settings: Settings, size: tuple[int, int]) -> Forward:
        return Forward(lambda x: model(x) + self.delta, settings.device, {"precision": settings.precision.value})


@pytest.fixture
def perturbed():
    added = [Perturbed("perturbed", 1e-2), Perturbed("poisoned", float("nan")), Perturbed("nudged", 1e-6)]
    for backend in added:
        register_backend(backend)
    yield
    for backend in added:
        BACKENDS.pop(backend.name)


def test_the_gate_refuses_a_backend_that_moves_the_output_and_nothing_is_written(tmp_path, small_data, perturbed):
    out = tmp_path / "run"
    result = invoke(
        "evaluate",
        "--model",
        "flowcnrdb_tiny",
        "--data",
        small_data,
        "--out",
        out,
        "--backend",
        "perturbed",
        "--no-report",
    )
    assert result.exit_code == 1
    line = one_error(result.output)
    assert "backend perturbed (fp32) is not equivalent" in line and "max |diff| 0.01" in line and "<= 0.0001" in line
    assert not list((out / "res").glob("*.tif")) and not (out / "summary.json").exists()
    result = invoke(
        "evaluate",
        "--model",
        "flowcnrdb_tiny",
        "--data",
        small_data,
        "--out",
        tmp_path / "nan",
        "--backend",
        "poisoned",
        "--no-report",
    )
    assert result.exit_code == 1 and "non-finite values" in one_error(result.output)
    result = invoke(
        "evaluate",
        "--model",
        "flowcnrdb_tiny",
        "--data",
        small_data,
        "--out",
        tmp_path / "ok",
        "--backend",
        "nudged",
        "--no-report",
    )
    assert result.exit_code == 0, result.output  # within 1e-4: accepted


def test_a_backend_that_cannot_serve_says_so_and_the_advice_works(tmp_path, small_data):
    args = ("evaluate", "--model", "unet_baseline", "--random-init", "--data", small_data, "--no-report")
    result = invoke(*args, "--out", tmp_path / "a", "--backend", "fast")
    assert result.exit_code == 2
    line = one_error(result.output)
    assert "fast backend serves FlowCNRDB variants only" in line and "use eager" in line
    result = invoke(*args, "--out", tmp_path / "b", "--backend", "eager")
    assert result.exit_code == 0, result.output
    assert one_error(invoke(*args, "--out", tmp_path / "c", "--backend", "warp9").output).endswith(
        "known: auto, eager, fast, compile, onnxruntime, openvino"
    )


def test_the_backend_is_recorded_and_the_callers_thread_count_is_left_as_it_was(tmp_path, small_data):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = tmp_path / "run"
        result = invoke("evaluate", "--model", "flowcnrdb_tiny", "--data", small_data, "--out", out, "--threads", "1")
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    settings = json.loads((out / "run.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert settings["backend"] == summary["backend"] == summary["runtime"]["backend"] == "fast"
    assert summary["runtime"]["threads"] == 1 and summary["runtime"]["gate"]["passed"]
    assert "fast" in (out / "report.html").read_text()
    again = invoke(
        "evaluate", "--model", "flowcnrdb_tiny", "--data", small_data, "--out", out, "--backend", "eager", "--no-report"
    )
    assert again.exit_code == 2 and "backend" in one_error(again.output)  # another backend is another run


def test_bench_times_every_backend_in_a_fresh_process_and_names_the_isa(tmp_path):
    result = invoke(
        "bench",
        "--model",
        "unet_baseline",
        "--size",
        "64x64",
        "--backend",
        "eager,onnxruntime,openvino",
        "--threads",
        "1",
        "--warmup",
        "0",
        "--repeats",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert [r["backend"] for r in doc["runs"]] == ["eager", "onnxruntime", "openvino"]
    assert doc["machine"]["isa"] == torch.backends.cpu.get_cpu_capability() and isinstance(doc["machine"]["amx"], bool)
    assert all(r["threads"] == 1 and r["refused"] is None and r["speedup_vs_eager_fp32"] > 0 for r in doc["runs"])
    assert all(r["gate"]["max_abs_diff"] <= 1e-4 for r in doc["runs"][1:])
    result = invoke(
        "bench",
        "--model",
        "flowcnrdb_tiny",
        "--size",
        "64x64",
        "--backend",
        "eager,fast",
        "--warmup",
        "0",
        "--repeats",
        "1",
    )
    assert result.exit_code == 0, result.output
    assert "fast fp32" in result.output and "gate: max |diff|" in result.output


def test_export_writes_the_model_and_a_parity_line_and_names_an_operator_it_cannot_export(tmp_path):
    out = tmp_path / "unet.onnx"
    result = invoke(
        "export", "--model", "unet_baseline", "--random-init", "--format", "onnx", "--size", "64x64", "--out", out
    )
    assert result.exit_code == 0, result.output
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.shape for i in session.get_inputs()] == [[1, 9, 64, 64]]
    assert "parity against eager float32 on one burst: max |diff|" in result.output
    model_file = tmp_path / "spectral.py"
    model_file.write_text(
        "import torch\nfrom torch import nn\n\n\nclass Spectral(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.conv = nn.Conv2d(9, 3, 3, padding=1)\n\n    def forward(self, x):\n"
        "        return self.conv(torch.fft.irfft2(torch.fft.rfft2(x) * 0.5, s=x.shape[-2:]))\n"
    )
    bad = tmp_path / "bad" / "spectral.onnx"
    result = invoke("export", "--model", f"{model_file}:Spectral", "--format", "onnx", "--size", "64x64", "--out", bad)
    assert result.exit_code == 2
    assert one_error(result.output) == "error: ONNX export failed: operator aten::fft_rfft2 is not supported"
    assert not any(p.is_file() for p in bad.parent.rglob("*"))  # nothing half-written
    result = invoke(
        "export",
        "--model",
        f"{model_file}:Spectral",
        "--format",
        "openvino",
        "--size",
        "64x64",
        "--out",
        tmp_path / "ov" / "s.xml",
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ov" / "s.xml").is_file() and (tmp_path / "ov" / "s.bin").is_file()
