"""`harness package`: deterministic results zips, refusals, safe verification, code zips."""

from __future__ import annotations

import json
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from harness import create_model
from harness.cli import app
from harness.errors import HarnessError
from harness.package.code import package_code, verify_code
from harness.package.results import (
    SWAP_MARGIN,
    SWAP_MIN_FIT,
    _channel_fit,
    check_channel_order,
    package_results,
    verify_zip,
)
from harness.package.zips import safe_extract

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, small_data):
    out = tmp_path_factory.mktemp("runs") / "demosaic"
    result = runner.invoke(app, ["evaluate", "--model", "demosaic", "--data", str(small_data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_zip_is_deterministic_flat_and_sorted(tmp_path, run_dir):
    a = package_results(run_dir, tmp_path / "a.zip")
    b = package_results(run_dir, tmp_path / "b.zip")
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as zf:
        names = zf.namelist()
        assert names == sorted(names) == ["Scene-280-out.tif", "Scene-281-out.tif", "Scene-282-out.tif"]
        assert all(
            i.date_time == (1980, 1, 1, 0, 0, 0) and (i.external_attr >> 16) & 0o777 == 0o644 for i in zf.infolist()
        )


def test_verify_scores_like_the_run(tmp_path, run_dir, small_data):
    zip_path = package_results(run_dir, tmp_path / "s.zip")
    report = verify_zip(zip_path, small_data)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert report["psnr"] == summary["psnr"] and report["ssim"] == summary["ssim"]
    result = runner.invoke(app, ["package", "verify", str(zip_path), "--gt", str(small_data)])
    assert result.exit_code == 0 and "the server reads 3 output(s)" in result.output


def test_verify_descends_into_a_single_folder(tmp_path, run_dir, small_data):
    zip_path = tmp_path / "nested.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted((run_dir / "res").iterdir()):
            zf.write(p, f"res/{p.name}")
        zf.writestr("res/readme.txt", "hello")
    report = verify_zip(zip_path, small_data)
    assert report["folder_read"] == "res" and len(report["outputs"]) == 3
    assert any("readme.txt" in n for n in report["notes"])


def _damage(run: Path, how: str, small_data: Path) -> None:
    res = run / "res"
    target = res / "Scene-281-out.tif"
    img = tifffile.imread(target)
    if how == "wrong-name":
        target.rename(res / "scene_281.tif")
    elif how == "16-bit":
        tifffile.imwrite(target, img.astype(np.uint16) * 257, photometric="rgb")
    elif how == "grey":
        tifffile.imwrite(target, img[..., 1], photometric="minisblack")
    elif how == "wrong-size":
        tifffile.imwrite(target, img[:32], photometric="rgb")
    elif how == "missing-scene":
        target.unlink()
    elif how == "red-blue-swapped":
        tifffile.imwrite(target, np.ascontiguousarray(img[..., ::-1]), photometric="rgb")


@pytest.mark.parametrize("how", ["wrong-name", "16-bit", "grey", "wrong-size", "missing-scene", "red-blue-swapped"])
def test_bad_results_refused(tmp_path, run_dir, small_data, how):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    _damage(run, how, small_data)
    result = runner.invoke(app, ["package", "results", str(run), "--out", str(tmp_path / "s.zip")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert "281" in errors[0] or how == "wrong-name"
    if how == "red-blue-swapped":
        assert "swapped" in errors[0]
    assert not (tmp_path / "s.zip").exists()


def _stretched(x: np.ndarray) -> np.ndarray:
    return ((x - x.min()) / (x.max() - x.min()) * 255).round().astype(np.uint8)


def test_brightness_without_colour_is_not_called_swapped():
    """An output that follows brightness, not colour, may fit the swapped channels better by chance; that proves nothing."""
    from skimage.data import astronaut

    ref = astronaut()[::4, ::4]
    blue = ref[..., 2].astype(np.float64)
    noisy = blue + np.random.default_rng(0).normal(0, 1.5 * blue.std(), blue.shape)
    out = np.stack([_stretched(blue), ref[..., 1], _stretched(noisy)], axis=-1)  # red and blue: the reference's blue
    as_written, swapped = _channel_fit(out, ref), _channel_fit(out[..., ::-1], ref)
    assert swapped > as_written + SWAP_MARGIN and swapped > SWAP_MIN_FIT  # channel fits alone would call it swapped
    check_channel_order("Scene-280-out.tif", out, ref)
    faded = (0.7 * ref.mean(axis=-1, keepdims=True) + 0.3 * ref[..., ::-1]).round().astype(np.uint8)  # BGR, desaturated
    with pytest.raises(HarnessError, match="Scene-281-out.tif: red and blue look swapped"):
        check_channel_order("Scene-281-out.tif", faded, ref)


def _unsafe_zip(path: Path, how: str) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if how == "zip-slip":
            zf.writestr("../../escaped.tif", b"x")
        elif how == "absolute":
            info = zipfile.ZipInfo("placeholder.tif")
            info.filename = "/tmp/harness-absolute.tif"
            zf.writestr(info, b"x")
        elif how == "symlink":
            info = zipfile.ZipInfo("link.tif")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
        elif how == "bomb":
            zf.writestr("Scene-300-out.tif", b"\0" * (64 * 1024**2))


@pytest.mark.parametrize("how", ["zip-slip", "absolute", "symlink", "bomb"])
def test_unsafe_zips_refused_before_extraction(tmp_path, how):
    zip_path = tmp_path / "evil.zip"
    _unsafe_zip(zip_path, how)
    target = tmp_path / "deep" / "er" / "target"
    target.mkdir(parents=True)
    with pytest.raises(HarnessError):
        safe_extract(zip_path, target)
    assert not any(target.iterdir())
    assert not (tmp_path / "deep" / "escaped.tif").exists() and not Path("/tmp/harness-absolute.tif").exists()
    result = runner.invoke(app, ["package", "verify", str(zip_path)])
    assert result.exit_code == 2


def test_code_zip_runs_without_harness_and_matches_evaluate(tmp_path, small_data):
    torch.manual_seed(0)
    model = create_model("flowcnrdb_tiny")
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    torch.save(model.state_dict(), tmp_path / "tiny.pth")
    manifest = tmp_path / "tiny.toml"
    manifest.write_text(
        '[team]\nid = "07"\nname = "Test"\n[model]\nregistered = "flowcnrdb_tiny"\nname = "Tiny"\n'
        'weights = "tiny.pth"\n[factsheet]\ntitle = "t"\n'
    )
    zip_path = package_code(manifest, tmp_path / "code.zip")
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        assert {
            "models/Model_07_Tiny.py",
            "model_zoo/Ckpt_07_Tiny.pth",
            "test_demo.py",
            "factsheet/config_table.tex",
            "README.md",
        } <= names
        source = zf.read("models/Model_07_Tiny.py").decode()
        assert "import harness" not in source and "from harness" not in source
        assert "merge\\_depth & 3" in zf.read("factsheet/config_table.tex").decode()
    result = verify_code(zip_path, manifest, small_data)
    assert result["identical"] and result["scenes"] == 3
    assert "parameters:" in result["demo_stdout"] and "fvcore FLOPs" in result["demo_stdout"]


def test_demo_cannot_import_harness(tmp_path):
    from harness.package.code import run_demo

    zip_path = tmp_path / "cheat.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("test_demo.py", "import harness\n")
    proc = run_demo(zip_path, tmp_path, tmp_path / "out")
    assert proc.returncode != 0 and "not available to a code submission" in proc.stderr


def test_verify_reads_lzw_tiffs_from_other_tools(tmp_path, run_dir, small_data):
    """cv2.imwrite (the starter kit) writes LZW-compressed TIFFs; the server read them, so must we."""
    from PIL import Image

    zip_path = tmp_path / "lzw.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted((run_dir / "res").iterdir()):
            lzw = tmp_path / p.name
            Image.fromarray(tifffile.imread(p)).save(lzw, compression="tiff_lzw")
            zf.write(lzw, f"submission/{p.name}")
    report = verify_zip(zip_path, small_data)
    assert report["psnr"] == json.loads((run_dir / "summary.json").read_text())["psnr"]
