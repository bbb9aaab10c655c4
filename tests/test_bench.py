"""`harness bench`: the latency protocol, its JSON document, and the fast path against the faithful one."""

from __future__ import annotations

import json
import platform

from clihelp import invoke


def test_bench_json_document_and_faithful_comparison():
    result = invoke("bench", "--model", "flowcnrdb_tiny", "--size", "64x128", "--warmup", "1", "--repeats", "3",
                    "--compare-faithful", "--threads", "1", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) >= {"model", "source", "size", "device", "precision", "warmup", "repeats", "machine", "runs", "faithful_max_abs_diff", "warnings"}
    assert doc["precision"] == "fp32" and {r["precision"] for r in doc["runs"]} == {"fp32"}
    assert set(doc["machine"]) >= {"cpu", "cores", "torch", "load_average"}
    assert [r["path"] for r in doc["runs"]] == ["default", "faithful"]
    for run in doc["runs"]:
        assert len(run["seconds"]) == 3 and run["threads"] == 1 and run["peak_memory_mb"] > 0
        assert run["median_seconds"] == sorted(run["seconds"])[1] and run["iqr_seconds"] >= 0
        if platform.libc_ver()[0] == "glibc":  # each worker starts with glibc's thread cache off (harness.allocator)
            assert run["allocator"] == "glibc: freed memory kept, one arena, no fast bins, no thread cache"
    assert 0 < doc["faithful_max_abs_diff"] < 1e-4  # seeded weights of realistic scale: the paths really compute


def test_bench_any_source_and_bad_input(tmp_path):
    net = tmp_path / "net.py"
    net.write_text("from torch import nn\n\nclass Net(nn.Sequential):\n    def __init__(self):\n        super().__init__(nn.Conv2d(9, 3, 3, padding=1))\n")
    result = invoke("bench", "--model", f"{net}:Net", "--size", "32x32", "--repeats", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["source"]["kind"] == "file"
    bad = invoke("bench", "--model", f"{net}:Net", "--size", "32x32", "--compare-faithful")
    assert bad.exit_code == 2 and "no fast path" in bad.output
