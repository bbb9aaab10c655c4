"""`harness bench`: the latency protocol, its JSON document, each backend against eager."""

from __future__ import annotations

import json
import platform

from clihelp import invoke, one_error


def test_bench_json_document_and_the_fast_backend_against_eager():
    result = invoke(
        "bench",
        "--model",
        "flowcnrdb_tiny",
        "--size",
        "64x128",
        "--warmup",
        "1",
        "--repeats",
        "3",
        "--backend",
        "fast,eager",
        "--threads",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) >= {
        "model",
        "source",
        "size",
        "device",
        "precision",
        "warmup",
        "repeats",
        "machine",
        "runs",
        "warnings",
    }
    assert doc["precision"] == "fp32" and {r["precision"] for r in doc["runs"]} == {"fp32"}
    assert (
        set(doc["machine"]) >= {"cpu", "cores", "torch", "load_average", "gpu", "isa", "amx"}
        and doc["machine"]["gpu"] is None
    )
    assert [r["backend"] for r in doc["runs"]] == ["fast", "eager"]
    for run in doc["runs"]:
        assert len(run["seconds"]) == 3 and run["threads"] == 1 and run["peak_memory_mb"] > 0
        assert run["median_seconds"] == sorted(run["seconds"])[1] and run["iqr_seconds"] >= 0
        if platform.libc_ver()[0] == "glibc":  # each worker starts with glibc's thread cache off (harness.allocator)
            assert run["allocator"] == "glibc: freed memory kept, one arena, no fast bins, no thread cache"
    assert (
        0 < doc["runs"][0]["gate"]["max_abs_diff"] < 1e-4
    )  # seeded weights of realistic scale: the paths really compute
    assert doc["runs"][1]["gate"] is None and doc["runs"][1]["speedup_vs_eager_fp32"] == 1.0


def test_bench_any_source_and_bad_input(tmp_path):
    net = tmp_path / "net.py"
    net.write_text(
        "from torch import nn\n\nclass Net(nn.Sequential):\n    def __init__(self):\n        super().__init__(nn.Conv2d(9, 3, 3, padding=1))\n"
    )
    result = invoke("bench", "--model", f"{net}:Net", "--size", "32x32", "--repeats", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["source"]["kind"] == "file"
    some = invoke("bench", "--model", f"{net}:Net", "--size", "32x32", "--repeats", "1", "--backend", "eager,fast")
    assert some.exit_code == 0, some.output
    assert (
        "skipped: --backend fast: the fast backend serves FlowCNRDB variants only" in some.output
        and "eager fp32" in some.output
    )
    bad = invoke("bench", "--model", f"{net}:Net", "--size", "32x32", "--backend", "fast")
    assert bad.exit_code == 2 and "fast backend serves FlowCNRDB variants only" in one_error(
        bad.output
    )  # nothing to run


def test_a_gpu_bench_names_the_gpu(monkeypatch):
    import torch

    from harness.bench import machine

    class Props:
        name, total_memory, major, minor = "NVIDIA H200", 143771 * 2**20, 9, 0

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Props())
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    gpu = machine(torch.device("cuda"))["gpu"]
    assert gpu == {"name": "NVIDIA H200", "memory_mb": 143771, "capability": "9.0", "cuda": "13.0"}
    assert machine(torch.device("cpu"))["gpu"] is None
    from harness.evaluate import versions  # an evaluation's run.json names the GPU too

    assert versions(torch.device("cuda"))["gpu"] == "NVIDIA H200" and versions(torch.device("cuda"))["cuda"] == "13.0"
    assert "gpu" not in versions(torch.device("cpu"))


def test_the_bench_line_names_the_gpu(monkeypatch):
    import harness.bench

    run = {
        "backend": "eager",
        "precision": "tf32",
        "median_seconds": 0.58,
        "iqr_seconds": 0.001,
        "seconds": [0.58],
        "threads": 16,
        "peak_memory_mb": 6573.0,
        "allocator": "glibc",
        "setup_seconds": 0.0,
        "gate": None,
        "refused": None,
        "speedup_vs_eager_fp32": None,
    }
    doc = {
        "model": "flowcnrdb_tiny",
        "size": [32, 32],
        "device": "cuda",
        "warnings": [],
        "runs": [run],
        "skipped": {},
        "machine": {
            "cpu": "Host CPU",
            "cores": 16,
            "torch": "2.11.0",
            "load_average": [0.1, 0.1, 0.1],
            "isa": "AVX512",
            "amx": False,
            "gpu": {"name": "NVIDIA H200", "memory_mb": 143771, "capability": "9.0", "cuda": "13.0"},
        },
    }
    monkeypatch.setattr(harness.bench, "bench", lambda cfg: doc)
    result = invoke("bench", "--model", "flowcnrdb_tiny", "--size", "32x32")
    assert result.exit_code == 0, result.output
    assert "on cuda (NVIDIA H200, CUDA 13.0; host Host CPU, ISA AVX512, 16 cores" in " ".join(result.output.split())
