"""`harness evaluate` and `harness score`: server numbers, resume, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from skimage.color import rgb2gray
from skimage.io import imread
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from typer.testing import CliRunner

from harness.cli import app
from harness.evaluate import EvalConfig, evaluate

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _server_score(res: Path, gt_dir: Path) -> tuple[float, float]:
    """An independent re-statement of the scoring program: skimage I/O and metrics."""
    psnrs, ssims = [], []
    for path in sorted(res.glob("*.tif")):
        out = imread(path)
        gt = imread(gt_dir / path.name.replace("-out", "-gt"))
        gt = np.clip(gt * 255, 0, 255).astype(np.uint8)
        psnrs.append(peak_signal_noise_ratio(gt, out))
        ssims.append(structural_similarity(rgb2gray(gt), rgb2gray(out), data_range=2))
    return float(np.mean(psnrs)), float(np.mean(ssims))


def test_evaluate_matches_an_independent_scorer(tmp_path, small_data):
    code, output = _run("evaluate", "--model", "flowcnrdb_tiny", "--random-init", "--data", str(small_data), "--out", str(tmp_path / "run"))
    assert code == 0, output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    table = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert summary["num_scenes"] == 3 and list(table["scene"]) == ["Scene-280", "Scene-281", "Scene-282"]
    psnr, ssim = _server_score(tmp_path / "run" / "res", small_data)
    assert abs(summary["psnr"] - psnr) < 1e-9 and abs(summary["ssim"] - ssim) < 1e-9
    assert summary["psnr"] == pytest.approx(table["psnr"].mean(), abs=1e-12)
    for key in ("model", "weights_sha256", "data", "split", "quantize", "device", "amp", "tiling", "versions", "timings", "peak_memory_mb"):
        assert key in summary
    out = tifffile.imread(tmp_path / "run" / "res" / "Scene-280-out.tif")
    assert out.dtype == np.uint8 and out.shape == (64, 128, 3)


def test_score_command_reads_like_the_server(tmp_path, small_data):
    assert _run("evaluate", "--model", "demosaic", "--data", str(small_data), "--out", str(tmp_path / "run"))[0] == 0
    nested = tmp_path / "submission" / "inner"
    shutil.copytree(tmp_path / "run" / "res", nested)
    code, output = _run("score", str(tmp_path / "submission"), "--gt", str(small_data), "--out", str(tmp_path / "score"))
    assert code == 0, output
    a = json.loads((tmp_path / "run" / "summary.json").read_text())
    b = json.loads((tmp_path / "score" / "summary.json").read_text())
    assert a["psnr"] == b["psnr"] and a["ssim"] == b["ssim"]


def test_resume_after_interrupt_gives_the_same_summary(tmp_path, small_data):
    cfg = dict(model="flowcnrdb_tiny", random_init=True, data=str(small_data))
    straight = evaluate(EvalConfig(**cfg, out=str(tmp_path / "straight")))

    def interrupt(scene, row, k, n):
        if k == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate(EvalConfig(**cfg, out=str(tmp_path / "resumed")), on_scene=interrupt)
    res = tmp_path / "resumed" / "res"
    assert sorted(p.name for p in res.iterdir()) == ["Scene-280-out.tif"]
    seen = []
    resumed = evaluate(EvalConfig(**cfg, out=str(tmp_path / "resumed")), on_scene=lambda s, r, k, n: seen.append(r["seconds"]))
    for key in ("psnr", "ssim", "ssim_standard", "num_scenes"):
        assert resumed[key] == straight[key]
    for name in ("Scene-280-out.tif", "Scene-282-out.tif"):
        assert (res / name).read_bytes() == (tmp_path / "straight" / "res" / name).read_bytes()
    assert not list(res.glob(".*"))


def test_quantize_round_versus_floor(tmp_path, small_data):
    floor = evaluate(EvalConfig(model="demosaic", data=str(small_data), out=str(tmp_path / "f")))
    rnd = evaluate(EvalConfig(model="demosaic", data=str(small_data), out=str(tmp_path / "r"), quantize="round"))
    print(f"demosaic PSNR floor {floor['psnr']:.4f} dB, round {rnd['psnr']:.4f} dB: {rnd['psnr'] - floor['psnr']:+.4f} dB")
    assert floor["quantize"] == "floor" and rnd["quantize"] == "round" and floor["psnr"] != rnd["psnr"]


def test_tiled_inference_reports_its_difference(tmp_path, small_data):
    code, output = _run("evaluate", "--model", "flowcnrdb_tiny", "--random-init", "--data", str(small_data), "--tile", "64",
                        "--overlap", "16", "--out", str(tmp_path / "run"), "--scenes", "280")
    assert code == 0, output
    diff = json.loads((tmp_path / "run" / "summary.json").read_text())["tiling"]["difference_to_full_image"]
    assert diff["scene"] == "Scene-280" and np.isfinite(diff["max_abs_diff"])
    assert "tiling vs full image" in output


@pytest.fixture
def data(tmp_path, small_data):
    folder = tmp_path / "data"
    shutil.copytree(small_data, folder)
    return folder


def _expect_refused(tmp_path, *args: str, needle: str) -> None:
    code, output = _run("evaluate", *args, "--out", str(tmp_path / "run"))
    assert code == 2, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], output
    assert not (tmp_path / "run" / "res").exists()


def test_missing_gt_refused_before_any_work(tmp_path, data):
    (data / "Scene-281-gt.tif").unlink()
    _expect_refused(tmp_path, "--model", "demosaic", "--data", str(data), needle="Scene-281")


def test_wrong_size_scene_refused_before_any_work(tmp_path, data):
    for i in range(9):
        tifffile.imwrite(data / f"Scene-282-in-{i}.tif", np.zeros((48, 128), np.float32), photometric="minisblack")
    _expect_refused(tmp_path, "--model", "flowcnrdb_tiny", "--random-init", "--data", str(data), needle="Scene-282")


def test_flowcnrdb_without_weights_says_how(tmp_path, data):
    _expect_refused(tmp_path, "--model", "flowcnrdb", "--data", str(data), needle="--weights")


def test_non_finite_output_fails_naming_the_scene(tmp_path, data):
    arr = tifffile.imread(data / "Scene-281-in-0.tif")
    arr[10, 10] = np.inf
    tifffile.imwrite(data / "Scene-281-in-0.tif", arr, photometric="minisblack")
    code, output = _run("evaluate", "--model", "demosaic", "--data", str(data), "--out", str(tmp_path / "run"))
    assert code == 2 and "Scene-281" in output and "non-finite" in output
