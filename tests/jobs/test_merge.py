"""Run folders of one model over disjoint scenes merge into the folder a single run writes (harness.merge)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from clihelp import invoke, one_error
from same_run import assert_same_run

from harness.errors import HarnessError
from harness.evaluate import evaluate
from harness.merge import merge_runs
from harness.options import EvalConfig
from harness.run import RunFolder


def _evaluate(data: Path, out: Path, scenes: str | None = None, **extra) -> Path:
    evaluate(EvalConfig("flowcnrdb_tiny", data=data, split="all", scenes=scenes, out=out, **extra))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_data) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("merge")
    return {
        "single": _evaluate(small_data, root / "single"),
        "a": _evaluate(small_data, root / "a", "1,2,3,281"),
        "b": _evaluate(small_data, root / "b", "0,282"),
        "c": _evaluate(small_data, root / "c", "280"),
    }


def test_merged_parts_are_the_single_run(runs, tmp_path):
    summary = merge_runs([runs["c"], runs["a"], runs["b"]], tmp_path / "merged")  # any order
    assert_same_run(tmp_path / "merged", runs["single"])
    assert summary.timings["merged_runs"] == 3 and RunFolder(tmp_path / "merged").verified().psnr == summary.psnr
    assert summary.psnr == json.loads((runs["single"] / "summary.json").read_text())["psnr"]  # to the last bit


def test_what_does_not_merge_is_refused_and_nothing_is_written(runs, small_data, tmp_path):
    def refused(parts: list[Path], needle: str, out: Path | None = None) -> None:
        out = out or tmp_path / "out"
        with pytest.raises(HarnessError, match=needle):
            merge_runs(parts, out)
        assert not out.exists() or list(out.iterdir()) == []

    refused([runs["a"], runs["single"]], "Scene-001: in both")
    other = _evaluate(small_data, tmp_path / "rounded", "0", quantize="round")
    refused([runs["a"], other], r"quantize differ")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    with pytest.raises(HarnessError, match="not an empty folder"):
        merge_runs([runs["a"], runs["b"]], tmp_path / "taken")
    edited = tmp_path / "edited"
    shutil.copytree(runs["b"], edited)
    (edited / "metrics.csv").write_text((edited / "metrics.csv").read_text().replace("Scene-282", "Scene-283"))
    refused([runs["a"], edited], "metrics.csv was changed")
    refused([], "no runs to merge")


def test_merge_command_merges_and_refuses_in_one_line(runs, tmp_path):
    result = invoke("merge", runs["a"], runs["b"], runs["c"], "--out", tmp_path / "m", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["num_scenes"] == 7
    assert_same_run(tmp_path / "m", runs["single"])
    assert invoke("package", "results", tmp_path / "m", "--out", tmp_path / "m.zip").exit_code == 0
    refused = invoke("merge", runs["a"], runs["single"], "--out", tmp_path / "n")
    assert refused.exit_code == 2 and "Scene-001: in both" in one_error(refused.output)
    inside = invoke("merge", runs["a"], runs["b"], "--out", runs["a"] / "res" / "merged")
    assert inside.exit_code == 2 and "an input of this command" in one_error(inside.output)
