"""benchmarks/dense_floor.py (run by hand): its record of a forward's dense calls and their replay."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch

from harness import create_model
from harness.budget.analytic import analytic_count
from harness.inference import cpu_has_bf16
from harness.options import Precision

SIZE = (64, 128)


@pytest.fixture(scope="module")
def dense_floor() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "dense_floor.py"
    spec = importlib.util.spec_from_file_location("dense_floor", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(path.parent))  # as when run: its siblings (precision.py) importable
        spec.loader.exec_module(module)
    return module


def test_recorded_macs_of_the_published_forward_are_the_budgets(dense_floor: ModuleType) -> None:
    model = create_model("flowcnrdb_tiny").eval()
    calls = dense_floor.DenseCalls()
    with torch.inference_mode(), calls:
        model(torch.rand(1, 9, *SIZE))
    recorded = sum(calls.macs[call] * n for call, n in calls.calls.items())
    count = analytic_count(model, (1, 9, *SIZE))
    assert recorded == count.by_category["conv"] + count.by_category["conv_same"] + count.by_category["linear"]
    groups = {dense_floor._group(func, args) for func, args, _ in calls.calls}
    assert groups == {"depth-wise convolutions", "dense convolutions"}  # its 1x1 layers are convolutions


def test_the_fast_path_does_fewer_macs_and_every_call_replays(dense_floor: ModuleType) -> None:
    model = create_model("flowcnrdb_tiny").eval()
    faithful = dense_floor.DenseCalls()
    with torch.inference_mode(), faithful:
        model(torch.rand(1, 9, *SIZE))
    calls = dense_floor.record("flowcnrdb_tiny", SIZE, Precision.fp32)
    total = sum(calls.macs[call] * n for call, n in calls.calls.items())
    assert 0 < total < sum(faithful.macs[call] * n for call, n in faithful.calls.items())  # the folded CNRDB layers
    groups = dense_floor.floor(calls, repeats=1)
    assert sum(g[0] for g in groups.values()) == sum(calls.calls.values())
    assert sum(g[1] for g in groups.values()) == total
    assert all(math.isfinite(g[2]) and g[2] > 0 for g in groups.values())


@pytest.mark.skipif(not cpu_has_bf16(), reason="replaying in bfloat16 needs a CPU with bfloat16")
def test_a_float32_call_replays_in_bfloat16(dense_floor: ModuleType) -> None:
    calls = dense_floor.record("flowcnrdb_tiny", SIZE, Precision.fp32)
    func, args, kwargs = next(iter(calls.calls))
    made = [a.make(torch.bfloat16) for a in args if isinstance(a, dense_floor.Layout)]
    assert all(t.dtype == torch.bfloat16 for t in made)
    assert dense_floor.best_time(func, args, kwargs, 1, 1, torch.bfloat16) > 0
