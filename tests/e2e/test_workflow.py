"""The path an entrant walks, end to end, and the defects found walking it."""

from __future__ import annotations

import json
import shutil
import tomllib
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch
from clihelp import invoke
from clihelp import one_error as _one_error

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: object, cwd: Path | None = None) -> tuple[int, str, str]:
    result = invoke(*args, cwd=cwd)
    return result.exit_code, result.stdout, result.output


@pytest.fixture(scope="module")
def challenge(tmp_path_factory) -> Path:
    """A synthetic training set with held-out scenes 280-282 and, in test/, two scenes without ground truth."""
    root = tmp_path_factory.mktemp("walk")
    code, _, out = _run(
        "data",
        "synth",
        root / "data",
        "--train-scenes",
        "2",
        "--val-scenes",
        "3",
        "--test-scenes",
        "2",
        "--size",
        "64x128",
        "--seed",
        "5",
    )
    assert code == 0, out
    return root


@pytest.fixture(scope="module")
def walked(challenge) -> Path:
    """Every step of the path, in order, each exiting 0: synth (above), evaluate val and test, report, compare, package, verify."""
    data, runs = challenge / "data", challenge / "runs"
    steps = [
        ("evaluate", "--model", "demosaic", "--data", data, "--split", "val", "--out", runs / "val-demosaic"),
        ("evaluate", "--model", "flowcnrdb_tiny", "--data", data, "--split", "val", "--out", runs / "val-tiny"),
        (
            "evaluate",
            "--model",
            "flowcnrdb_tiny",
            "--data",
            data / "test",
            "--split",
            "test",
            "--out",
            runs / "test-tiny",
        ),
        ("report", runs / "val-tiny"),
        ("report", runs / "test-tiny"),
        ("compare", runs / "val-demosaic", runs / "val-tiny", "--out", runs / "compare.html"),
        ("package", "results", runs / "test-tiny", "--out", runs / "submission.zip"),
        ("package", "verify", runs / "submission.zip", "--expect-scenes", "300-301"),
    ]
    for step in steps:
        code, _, out = _run(*step)
        assert code == 0, (step, out)
    return runs


def test_the_whole_path(challenge, walked):
    data, runs = challenge / "data", walked
    assert not list((data / "test").glob("*-gt.tif")) and len(list((data / "test").glob("*-in-*.tif"))) == 18
    test_summary = json.loads((runs / "test-tiny" / "summary.json").read_text())
    assert (
        test_summary["psnr"] is None
        and test_summary["num_scored"] == 0
        and test_summary["scenes"] == ["Scene-300", "Scene-301"]
    )
    html = (runs / "test-tiny" / "report.html").read_text()
    assert "No ground truth" in html and "reference frame 0" in html
    assert "Every mean is over the 3 scene(s)" in (runs / "compare.html").read_text()
    assert zipfile.ZipFile(runs / "submission.zip").namelist() == ["Scene-300-out.tif", "Scene-301-out.tif"]


def test_compare_refuses_runs_without_ground_truth_or_with_other_data(walked, tmp_path):
    runs = walked
    code, _, out = _run("compare", runs / "val-tiny", runs / "test-tiny", "--out", tmp_path / "c.html")
    assert code == 2 and "no ground truth" in _one_error(out)
    other = tmp_path / "other"
    assert (
        _run("data", "synth", other, "--train-scenes", "0", "--val-scenes", "3", "--size", "64x128", "--seed", "9")[0]
        == 0
    )
    assert _run("evaluate", "--model", "flowcnrdb_tiny", "--data", other, "--out", tmp_path / "val-other")[0] == 0
    code, _, out = _run("compare", runs / "val-tiny", tmp_path / "val-other", "--out", tmp_path / "c.html")
    assert code == 2 and "different ground truth" in _one_error(out)


def test_report_works_on_a_score_run_and_from_another_directory(challenge, tmp_path):
    data = challenge / "data"
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(data, work / "data")
    assert _run("evaluate", "--model", "demosaic", "--data", "data", "--out", "run", "--no-budget", cwd=work)[0] == 0
    summary = json.loads((work / "run" / "summary.json").read_text())
    assert Path(summary["data"]).is_absolute()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code, _, out = _run("report", work / "run", "--no-budget", cwd=elsewhere)
    assert code == 0, out
    html = (work / "run" / "report.html").read_text()
    assert "ground truth (8-bit)" in html and "absolute error" in html and "--no-budget" in html
    assert _run("score", work / "run" / "res", "--gt", work / "data", "--out", tmp_path / "scored")[0] == 0
    code, _, out = _run("report", tmp_path / "scored", "--no-budget")
    assert code == 0, out


def test_evaluating_a_subset_extends_the_run(challenge, tmp_path):
    data, run = challenge / "data", tmp_path / "run"
    assert _run("evaluate", "--model", "demosaic", "--data", data, "--out", run)[0] == 0
    before = (run / "res" / "Scene-281-out.tif").read_bytes()
    assert _run("evaluate", "--model", "demosaic", "--data", data, "--out", run, "--scenes", "280")[0] == 0
    assert list(pd.read_csv(run / "metrics.csv")["scene"]) == ["Scene-280", "Scene-281", "Scene-282"]
    assert json.loads((run / "summary.json").read_text())["num_scenes"] == 3
    assert (run / "res" / "Scene-281-out.tif").read_bytes() == before
    assert _run("package", "results", run, "--out", tmp_path / "s.zip")[0] == 0


def test_json_output_is_one_document_on_stdout(challenge, tmp_path):
    data = challenge / "data"
    commands = [
        ("models", "--json"),
        ("data", "check", data, "--json"),
        ("evaluate", "--model", "demosaic", "--data", data, "--out", tmp_path / "r", "--json", "--no-budget"),
        ("score", tmp_path / "r" / "res", "--gt", data, "--out", tmp_path / "s", "--json"),
        ("budget", "--model", "demosaic", "--size", "64x128", "--counters", "analytic", "--json"),
    ]
    docs = []
    for command in commands:
        code, stdout, out = _run(*command)
        assert code == 0, out
        docs.append(json.loads(stdout))
    assert {r["name"] for r in docs[0]} >= {"flowcnrdb", "demosaic"}
    assert docs[1]["ok"] is True and docs[2]["num_scenes"] == 3 and docs[3]["psnr"] == docs[2]["psnr"]
    assert _run("package", "results", tmp_path / "r", "--out", tmp_path / "z.zip")[0] == 0
    code, stdout, _ = _run("package", "verify", tmp_path / "z.zip", "--gt", data, "--json")
    assert code == 0 and json.loads(stdout)["psnr"] == docs[2]["psnr"]


def test_micro_batches_give_the_full_batch_step(challenge, tmp_path):
    data = challenge / "data"
    no_dropout = '{"stem_drop": 0, "reg_drop": 0, "merge_drop": 0}'
    common = (
        "train",
        "--model",
        "flowcnrdb_tiny",
        "--model-args",
        no_dropout,
        "--data",
        data,
        "--iters",
        "2",
        "--crop",
        "32",
        "--batch",
        "4",
        "--val-every",
        "2",
        "--log-every",
        "1",
        "--val-crop",
        "64",
        "--workers",
        "0",
    )
    assert _run(*common, "--out", tmp_path / "full")[0] == 0
    code, _, out = _run(*common, "--out", tmp_path / "micro", "--micro-batch", "1")
    assert code == 0, out
    a = torch.load(tmp_path / "full" / "last.pth", weights_only=True)
    b = torch.load(tmp_path / "micro" / "last.pth", weights_only=True)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    assert "loss nan" not in out


def test_the_memory_estimate_counts_what_autograd_keeps_once():
    from harness.train import memory

    net = torch.nn.Sequential(torch.nn.Conv2d(9, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 1))
    weights = 4 * sum(p.numel() * 4 for p in net.parameters())  # weights, gradients, AdamW's two moments
    kept = (
        2 * 8 * 8 * (9 + 4)
    )  # the input (the first convolution keeps it) and the ReLU's output (it and the second keep it)
    assert memory.training_memory(net, 2, 8) == int(memory.BACKWARD_MARGIN * kept * 4) + weights
    assert memory.training_memory(net, 2, 8, half=True) == int(memory.BACKWARD_MARGIN * kept * 2) + weights


def test_a_configuration_that_will_not_fit_is_refused_or_warned_about_with_no_memory_check(
    challenge, tmp_path, monkeypatch
):
    from harness.train import memory

    assert memory.training_memory(__import__("harness").create_model("flowcnrdb"), 10, 256) > 24 * 2**30
    monkeypatch.setattr(memory, "available_memory", lambda device: 2**20)
    code, _, out = _run(
        "train",
        "--model",
        "flowcnrdb_tiny",
        "--data",
        challenge / "data",
        "--iters",
        "1",
        "--crop",
        "32",
        "--batch",
        "2",
        "--workers",
        "0",
        "--out",
        tmp_path / "t",
        "--no-memory-check",
    )
    assert code == 0 and "warning: this configuration needs about" in out and "more than the" in out


def test_the_distribution_has_a_name_of_its_own():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] != "harness" and project["scripts"]["harness"] == "harness.cli:main"


def test_the_real_data_commands_of_the_readme_are_commands_the_harness_takes(tmp_path):
    """Without the real data they stop at the missing folder or file, never at their own spelling."""
    import shlex

    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Using the RawFusion data") :]
    block = section[section.index("```\n") + 4 : section.index("\n```", section.index("```\n") + 4)]
    lines = [line.split("#")[0].strip() for line in block.splitlines() if line.startswith("harness ")]
    assert len(lines) >= 4
    for line in lines:
        code, _, out = _run(*shlex.split(line)[1:], cwd=tmp_path)
        error = _one_error(out)
        assert code == 2 and not any(u in error for u in ("No such option", "Missing", "Got unexpected")), line
        assert any(m in error for m in ("no such", "No such file", "not a", "no res/")), (line, error)


def test_the_reports_budget_is_computed_once_and_cached(challenge, tmp_path, monkeypatch):
    import harness.budget.budget as budget_module

    data = challenge / "data"
    assert _run("evaluate", "--model", "demosaic", "--data", data, "--out", tmp_path / "a", "--no-report")[0] == 0
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    calls = []
    original = budget_module.budget
    monkeypatch.setattr(budget_module, "budget", lambda *a, **k: calls.append(1) or original(*a, **k))
    for _ in range(2):
        code, _, out = _run("report", tmp_path / "a")
        assert code == 0, out
    assert len(calls) == 1 and len(list((tmp_path / "cache" / "budgets").glob("*.json"))) == 1
    assert "fvcore" in (tmp_path / "a" / "report.html").read_text()
