"""`harness evaluate` and `harness score`: server numbers, resume, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from skimage.color import rgb2gray
from skimage.io import imread
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from typer.testing import CliRunner

from harness import create_model
from harness.cli import app
from harness.data.synth import frame0_exposure
from harness.evaluate import evaluate
from harness.inference import Tiling
from harness.options import EvalConfig

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
    code, output = _run(
        "evaluate",
        "--model",
        "flowcnrdb_tiny",
        "--random-init",
        "--data",
        str(small_data),
        "--out",
        str(tmp_path / "run"),
    )
    assert code == 0, output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    table = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert summary["num_scenes"] == 3 and list(table["scene"]) == ["Scene-280", "Scene-281", "Scene-282"]
    psnr, ssim = _server_score(tmp_path / "run" / "res", small_data)
    assert abs(summary["psnr"] - psnr) < 1e-9 and abs(summary["ssim"] - ssim) < 1e-9
    assert summary["psnr"] == pytest.approx(table["psnr"].mean(), abs=1e-12)
    for key in (
        "model",
        "weights_sha256",
        "data",
        "split",
        "quantize",
        "device",
        "precision",
        "tiling",
        "versions",
        "timings",
        "peak_memory_mb",
    ):
        assert key in summary
    out = tifffile.imread(tmp_path / "run" / "res" / "Scene-280-out.tif")
    assert out.dtype == np.uint8 and out.shape == (64, 128, 3)


def test_score_command_reads_like_the_server(tmp_path, small_data):
    assert _run("evaluate", "--model", "demosaic", "--data", str(small_data), "--out", str(tmp_path / "run"))[0] == 0
    nested = tmp_path / "submission" / "inner"
    shutil.copytree(tmp_path / "run" / "res", nested)
    code, output = _run(
        "score", str(tmp_path / "submission"), "--gt", str(small_data), "--out", str(tmp_path / "score")
    )
    assert code == 0, output
    a = json.loads((tmp_path / "run" / "summary.json").read_text())
    b = json.loads((tmp_path / "score" / "summary.json").read_text())
    assert a["psnr"] == b["psnr"] and a["ssim"] == b["ssim"]


def test_resume_after_interrupt_gives_the_same_summary(tmp_path, small_data):
    cfg = dict(model="flowcnrdb_tiny", random_init=True, data=str(small_data))
    straight = evaluate(EvalConfig(**cfg, out=str(tmp_path / "straight")))

    def interrupt(done, total, note=""):
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate(EvalConfig(**cfg, out=str(tmp_path / "resumed")), interrupt)
    res = tmp_path / "resumed" / "res"
    assert sorted(p.name for p in res.iterdir()) == ["Scene-280-out.tif"]
    resumed = evaluate(EvalConfig(**cfg, out=str(tmp_path / "resumed")))
    for key in ("psnr", "ssim", "ssim_standard", "num_scenes"):
        assert getattr(resumed, key) == getattr(straight, key)
    for name in ("Scene-280-out.tif", "Scene-282-out.tif"):
        assert (res / name).read_bytes() == (tmp_path / "straight" / "res" / name).read_bytes()
    assert not list(res.glob(".*"))


def _demosaic_output(data: Path, scene: str) -> np.ndarray:
    """The demosaic baseline's float output for one scene, computed here from its definition's parts."""
    model = create_model("demosaic", exposure=frame0_exposure(data)).eval()
    frames = np.stack([tifffile.imread(data / f"{scene}-in-{i}.tif") for i in range(9)]).astype(np.float32)
    with torch.no_grad():
        return model(torch.from_numpy(frames)[None])[0].permute(1, 2, 0).double().numpy()


def test_quantize_round_versus_floor(tmp_path, small_data):
    floor = evaluate(EvalConfig(model="demosaic", data=str(small_data), out=str(tmp_path / "f")))
    rnd = evaluate(EvalConfig(model="demosaic", data=str(small_data), out=str(tmp_path / "r"), quantize="round"))
    print(f"demosaic PSNR floor {floor.psnr:.4f} dB, round {rnd.psnr:.4f} dB: {rnd.psnr - floor.psnr:+.4f} dB")
    assert floor.quantize == "floor" and rnd.quantize == "round"
    scaled = np.clip(_demosaic_output(small_data, "Scene-281") * 255, 0, 255)
    got_floor = tifffile.imread(tmp_path / "f" / "res" / "Scene-281-out.tif")
    got_round = tifffile.imread(tmp_path / "r" / "res" / "Scene-281-out.tif")
    assert np.array_equal(got_floor, np.floor(scaled).astype(np.uint8))
    assert np.array_equal(got_round, np.rint(scaled).astype(np.uint8))
    step = got_round.astype(int) - got_floor.astype(int)
    assert set(np.unique(step)) == {0, 1} and 0.4 < step.mean() < 0.6  # round is floor + 1 on about half the values
    gt = np.clip(tifffile.imread(small_data / "Scene-281-gt.tif") * 255, 0, 255).astype(np.uint8)
    table = pd.read_csv(tmp_path / "r" / "metrics.csv").set_index("scene")
    assert table.loc["Scene-281", "psnr"] == pytest.approx(peak_signal_noise_ratio(gt, got_round), abs=1e-12)


def test_tiled_inference_equals_full_image_where_the_receptive_field_fits(tmp_path, small_data):
    # demosaic reaches one pixel: with an overlap of 8, every pixel lies 4 or more from its tile's inner edges.
    calls: list[tuple[int, ...]] = []
    original = torch.nn.Module.__call__

    def spy(module, *args, **kwargs):  # every forward of the top-level model: never a full image when tiling
        if type(module).__name__ == "BilinearDemosaic":
            calls.append(tuple(args[0].shape))
        return original(module, *args, **kwargs)

    torch.nn.Module.__call__ = spy
    try:
        code, output = _run(
            "evaluate",
            "--model",
            "demosaic",
            "--data",
            str(small_data),
            "--tile",
            "32",
            "--overlap",
            "8",
            "--out",
            str(tmp_path / "tiled"),
            "--scenes",
            "280",
            "--no-report",
        )
    finally:
        torch.nn.Module.__call__ = original
    assert code == 0, output
    assert (
        calls and all(shape[2:] == (32, 32) for shape in calls) and sum(s[0] for s in calls) == 15
    )  # 3 x 5 tiles, batched
    assert json.loads((tmp_path / "tiled" / "summary.json").read_text())["tiling"] == {"tile": 32, "overlap": 8}
    full = _run(
        "evaluate", "--model", "demosaic", "--data", str(small_data), "--out", str(tmp_path / "full"), "--scenes", "280"
    )
    assert full[0] == 0
    name = "res/Scene-280-out.tif"
    assert (tmp_path / "tiled" / name).read_bytes() == (tmp_path / "full" / name).read_bytes()


@pytest.mark.parametrize(
    "size,tile,overlap,multiple",
    [(64, 32, 8, 2), (128, 64, 16, 32), (100, 32, 10, 2), (64, 64, 0, 32), (96, 32, 0, 32)],
)
def test_tiles_cover_every_pixel_once_away_from_inner_edges(size, tile, overlap, multiple):
    spans = Tiling(tile, overlap).spans(size, multiple)
    kept = [p for _, lo, hi in spans for p in range(lo, hi)]
    assert kept == list(range(size))
    for start, lo, hi in spans:
        assert start <= lo < hi <= start + min(tile, size)
        assert lo == 0 or lo - start >= overlap // 2
        assert hi == size or start + tile - hi >= overlap // 2


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
