"""Scene discovery, splits, `harness data check` and `harness data synth`."""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from harness.cli import app
from harness.data import discover_scenes, parse_scene_list, read_frames, read_gt, select_scenes
from harness.errors import HarnessError

runner = CliRunner()


def _write_scene(folder: Path, number: int, h: int = 32, w: int = 64, gt: bool = True) -> None:
    rng = np.random.default_rng(number)
    for i in range(9):
        tifffile.imwrite(
            folder / f"Scene-{number:03d}-in-{i}.tif", rng.random((h, w), dtype=np.float32), photometric="minisblack"
        )
    if gt:
        tifffile.imwrite(
            folder / f"Scene-{number:03d}-gt.tif", rng.random((h, w, 3), dtype=np.float32), photometric="rgb"
        )


def test_numeric_order_whatever_the_creation_order(tmp_path):
    numbers = [5, 281, 17, 0, 299, 100, 280, 3]
    random.Random(1).shuffle(numbers)
    for n in numbers:
        _write_scene(tmp_path, n, gt=n != 100)
    scenes = discover_scenes(tmp_path)
    assert [s.number for s in scenes] == sorted(numbers)
    assert all(s.frames[i].name == f"{s.id}-in-{i}.tif" for s in scenes for i in range(9))
    assert [s.number for s in select_scenes(scenes, "train")] == [0, 3, 5, 17, 100]
    assert [s.number for s in select_scenes(scenes, "val")] == [280, 281, 299]
    assert 100 not in [s.number for s in select_scenes(scenes, "all")]
    assert len(select_scenes(scenes, "test")) == len(numbers)
    assert [s.number for s in select_scenes(scenes, "val", "280,3,5")] == [3, 5, 280]
    with pytest.raises(HarnessError, match="004"):
        select_scenes(scenes, "val", "3-5")


def test_reading_shapes_and_dtypes(tmp_path):
    _write_scene(tmp_path, 7)
    scene = discover_scenes(tmp_path)[0]
    assert read_frames(scene).shape == (9, 32, 64) and read_frames(scene).dtype == np.float32
    assert read_gt(scene).shape == (32, 64, 3)


def test_scene_list_parsing():
    assert parse_scene_list("280,283-285") == [280, 283, 284, 285]
    with pytest.raises(HarnessError):
        parse_scene_list("28x")


@pytest.fixture
def good(tmp_path, small_data):
    folder = tmp_path / "data"
    shutil.copytree(small_data, folder)
    return folder


def _break(folder: Path, how: str) -> str:
    """Damage scene 281 in one way; returns the file name the message must name."""
    frame = folder / "Scene-281-in-4.tif"
    if how == "deleted":
        frame.unlink()
    elif how == "truncated":
        frame.write_bytes(frame.read_bytes()[:300])
    elif how == "wrong-size":
        tifffile.imwrite(frame, np.zeros((32, 128), np.float32), photometric="minisblack")
    elif how == "three-channel":
        tifffile.imwrite(frame, np.zeros((64, 128, 3), np.float32), photometric="rgb")
    elif how == "nan":
        arr = tifffile.imread(frame)
        arr[3, 3] = np.nan
        tifffile.imwrite(frame, arr, photometric="minisblack")
    elif how == "gt-above-one":
        gt = folder / "Scene-281-gt.tif"
        arr = tifffile.imread(gt)
        arr[0, 0, 0] = 1.5
        tifffile.imwrite(gt, arr, photometric="rgb")
        return gt.name
    return frame.name


def test_check_passes_on_good_data(good):
    result = runner.invoke(app, ["data", "check", str(good)])
    assert result.exit_code == 0, result.output
    assert "64x128 (7)" in result.output and "ok: 7 scene(s)" in result.output


@pytest.mark.parametrize("how", ["deleted", "truncated", "wrong-size", "three-channel", "nan", "gt-above-one"])
def test_check_refuses(good, how):
    name = _break(good, how)
    result = runner.invoke(app, ["data", "check", str(good), "--split", "val"])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Scene-281")]
    assert len(lines) == 1 and name in lines[0], result.output


def test_a_stray_file_is_listed_with_the_other_problems_and_no_split_means_every_scene(good):
    (good / "Scene-280-in-0.tif").rename(good / "Scene-280-in-0.TIF")
    name = _break(good, "nan")
    result = runner.invoke(app, ["data", "check", str(good)])
    assert result.exit_code == 1 and "(every scene)" in result.output and "(test)" not in result.output
    assert "-: Scene-280-in-0.TIF: not a RawFusion name" in result.output
    assert f"Scene-281: {name}: " in result.output and "Scene-280: Scene-280-in-0.tif: frame missing" in result.output
    assert "3 problem(s)" in result.output


def test_synth_is_deterministic_and_documented(tmp_path):
    args = ["--train-scenes", "2", "--val-scenes", "1", "--size", "32x64", "--seed", "11"]
    for name in ("a", "b"):
        result = runner.invoke(app, ["data", "synth", str(tmp_path / name), *args])
        assert result.exit_code == 0, result.output
    digest = lambda folder: {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert "Scene-000-in-8.tif" in names and "Scene-280-gt.tif" in names and "dataset.json" in names
    import json

    meta = json.loads((tmp_path / "a" / "dataset.json").read_text())
    frame = meta["scenes"]["Scene-280"]["frames"][5]
    assert set(frame) == {"exposure", "shift", "blur_length", "blur_angle", "shot", "read"}
    assert meta["scenes"]["Scene-280"]["frames"][0]["shift"] == [0.0, 0.0]
    assert runner.invoke(app, ["data", "check", str(tmp_path / "a")]).exit_code == 0


def test_synth_refuses_non_empty_folder(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    result = runner.invoke(
        app, ["data", "synth", str(tmp_path / "x"), "--train-scenes", "1", "--val-scenes", "0", "--size", "32x64"]
    )
    assert result.exit_code == 2 and "not a dataset this generator wrote" in result.output
    forced = runner.invoke(
        app,
        [
            "data",
            "synth",
            str(tmp_path / "x"),
            "--force",
            "--train-scenes",
            "1",
            "--val-scenes",
            "0",
            "--size",
            "32x64",
        ],
    )
    assert forced.exit_code == 2 and (tmp_path / "x" / "keep.txt").read_text() == "mine"  # --force never deletes it
    args = ["data", "synth", str(tmp_path / "d"), "--train-scenes", "1", "--val-scenes", "0", "--size", "32x64"]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "pass --force to replace it" in again.output
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0  # the advice


def test_demosaic_baseline_difficulty_on_the_embedded_default(tmp_path):
    """The embedded validation scenes are as hard as intended: demosaic scores 22-28 dB."""
    result = runner.invoke(app, ["evaluate", "--model", "demosaic", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    import json

    psnr = json.loads((tmp_path / "run" / "summary.json").read_text())["psnr"]
    print(f"demosaic baseline on the embedded validation scenes: {psnr:.3f} dB")
    assert 22.0 <= psnr <= 28.0


def test_scene_numbers_read_as_ranges():
    from harness.data.scenes import number_ranges

    assert number_ranges([302, 300, 301, 305, 307, 306]) == "300-302, 305-307"
    assert number_ranges([7]) == "007" and number_ranges([]) == ""


def test_a_folder_of_test_inputs_without_split_says_what_it_holds_and_the_advice_works(tmp_path, small_data):
    import shutil

    from clihelp import invoke, one_error

    folder = tmp_path / "test"
    folder.mkdir()
    for old, new in ((280, 300), (281, 301), (282, 305)):
        for frame in sorted(small_data.glob(f"Scene-{old}-in-*.tif")):
            shutil.copy(frame, folder / frame.name.replace(f"Scene-{old}", f"Scene-{new}"))
    refused = invoke("evaluate", "--model", "demosaic", "--data", folder, "--out", tmp_path / "a", "--no-report")
    line = one_error(refused.output)
    assert refused.exit_code == 2 and "holds scenes 300-301, 305 (3, 0 with ground truth)" in line
    assert "--split test takes 3 of them" in line and not (tmp_path / "a").exists()
    taken = invoke(
        "evaluate", "--model", "demosaic", "--data", folder, "--out", tmp_path / "b", "--split", "test", "--no-report"
    )
    assert taken.exit_code == 0, taken.output
    assert len(list((tmp_path / "b" / "res").glob("*.tif"))) == 3
