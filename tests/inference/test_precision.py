"""`--precision`: FlowCNRDB's bfloat16 path within the PSNR bound, one-line refusals where the hardware lacks a
precision, and IEEE float32 on GPUs unless TF32 is asked for."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from clihelp import invoke, one_error

from harness.inference import precision_mode
from harness.options import Precision


def test_bf16_evaluation_stays_within_the_psnr_and_lsb_bounds(tmp_path, small_data):
    docs = {}
    for p in ("fp32", "bf16"):
        result = invoke(
            "evaluate",
            "--model",
            "flowcnrdb_tiny",
            "--data",
            small_data,
            "--out",
            tmp_path / p,
            "--device",
            "cpu",
            "--precision",
            p,
            "--no-report",
            "--json",
        )
        assert result.exit_code == 0, result.output
        docs[p] = json.loads(result.stdout)
    assert docs["fp32"]["precision"] == "fp32" and docs["bf16"]["precision"] == "bf16"
    assert abs(docs["bf16"]["psnr"] - docs["fp32"]["psnr"]) <= 0.05
    diffs = [
        np.abs(tifffile.imread(tmp_path / "bf16" / "res" / f.name).astype(int) - tifffile.imread(f).astype(int))
        for f in sorted((tmp_path / "fp32" / "res").glob("*-out.tif"))
    ]
    assert len(diffs) == docs["fp32"]["num_scenes"] == 3
    d = np.concatenate([x.ravel() for x in diffs])
    assert np.mean(d <= 1) >= 0.99
    assert json.loads((tmp_path / "bf16" / "run.json").read_text())["precision"] == "bf16"


def test_bf16_is_refused_in_one_line_where_the_cpu_lacks_it(monkeypatch, tmp_path, small_data):
    import harness.inference

    monkeypatch.setattr(harness.inference, "cpu_has_bf16", lambda: False)
    result = invoke(
        "evaluate",
        "--model",
        "flowcnrdb_tiny",
        "--data",
        small_data,
        "--out",
        tmp_path / "run",
        "--device",
        "cpu",
        "--precision",
        "bf16",
    )
    assert result.exit_code == 2 and "bfloat16" in one_error(result.output)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    bench = invoke("bench", "--model", "flowcnrdb_tiny", "--size", "32x32", "--device", "cpu", "--precision", "bf16")
    assert bench.exit_code == 2 and "bfloat16" in one_error(bench.output)
    fp16 = invoke("bench", "--model", "flowcnrdb_tiny", "--size", "32x32", "--device", "cpu", "--precision", "fp16")
    assert fp16.exit_code == 2 and "GPUs" in one_error(fp16.output)


def _tensor_float32_modes() -> tuple[str, str]:
    return torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision


def test_on_a_gpu_tf32_alone_runs_float32_on_tensor_cores_and_the_settings_come_back():
    cuda = torch.device("cuda")  # a device name: no GPU is needed to set cuDNN's flags
    before = _tensor_float32_modes()
    with precision_mode(Precision.tf32, cuda):
        assert _tensor_float32_modes() == ("tf32", "tf32")
    assert _tensor_float32_modes() == before
    with precision_mode(Precision.fp32, cuda):
        assert _tensor_float32_modes() == ("ieee", "ieee")  # PyTorch's default would run convolutions in TF32
    assert _tensor_float32_modes() == before
    with pytest.raises(RuntimeError), precision_mode(Precision.tf32, cuda):
        raise RuntimeError("a failing forward")
    assert _tensor_float32_modes() == before
    with precision_mode(Precision.fp32, torch.device("cpu")):
        assert _tensor_float32_modes() == before  # the CPU's arithmetic is not cuDNN's business


def test_tf32_is_refused_in_one_line_on_a_cpu(tmp_path, small_data):
    bench = invoke("bench", "--model", "flowcnrdb_tiny", "--size", "32x32", "--device", "cpu", "--precision", "tf32")
    assert bench.exit_code == 2 and "TF32" in one_error(bench.output) and "GPU" in one_error(bench.output)
    result = invoke(
        "evaluate",
        "--model",
        "flowcnrdb_tiny",
        "--data",
        small_data,
        "--out",
        tmp_path / "run",
        "--device",
        "cpu",
        "--precision",
        "tf32",
    )
    assert result.exit_code == 2 and "TF32" in one_error(result.output)
    assert not (tmp_path / "run").exists()
