"""Hostile and careless input: one `error:` line and exit 2 (never a traceback), bounded memory, no mixed runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from clihelp import invoke
from clihelp import one_error as _one_error
from typer.testing import CliRunner

from harness import create_model
from harness.cli import app
from harness.evaluate import evaluate
from harness.options import EvalConfig

runner = CliRunner()


def _run(*args: object, cwd: Path | None = None) -> tuple[int, str]:
    result = invoke(*args, cwd=cwd)
    return result.exit_code, result.output


@pytest.fixture
def data(tmp_path, small_data) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(small_data, folder)
    return folder


def _write_frame(path: Path, array: np.ndarray) -> None:
    tifffile.imwrite(path, array, photometric="minisblack")


def declare_huge(path: Path, height: int, width: int, channels: int = 0, compress: bool = True) -> None:
    """A small TIFF whose header declares height x width (x channels): decoding it would take gigabytes."""
    shape = (16, 16, channels) if channels else (16, 16)
    data = np.zeros(shape, np.uint8 if channels else np.float32)
    tifffile.imwrite(
        path, data, photometric="rgb" if channels else "minisblack", compression="zlib" if compress else None
    )
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(width)
        tif.pages[0].tags["ImageLength"].overwrite(height)
        tif.pages[0].tags["RowsPerStrip"].overwrite(height)


# --------------------------------------------------------------------------- bad data: evaluate refuses in one line


def _nan_frame(data: Path) -> None:
    arr = tifffile.imread(data / "Scene-281-in-4.tif")
    arr[3, 3] = np.nan
    _write_frame(data / "Scene-281-in-4.tif", arr)


def _nan_gt(data: Path) -> None:
    gt = tifffile.imread(data / "Scene-281-gt.tif")
    gt[2, 2, 1] = np.nan
    tifffile.imwrite(data / "Scene-281-gt.tif", gt, photometric="rgb")


def _uint8_gt(data: Path) -> None:
    gt = tifffile.imread(data / "Scene-281-gt.tif")
    tifffile.imwrite(data / "Scene-281-gt.tif", (gt * 255).astype(np.uint8), photometric="rgb")


def _uint16_frames(data: Path) -> None:
    _write_frame(data / "Scene-281-in-0.tif", np.zeros((64, 128), np.uint16))


DATA_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "nan-in-frame": (_nan_frame, "Scene-281-in-4.tif"),
    "nan-in-gt": (_nan_gt, "non-finite"),
    "uint8-gt": (_uint8_gt, "8-bit GT"),
    "uint16-frames": (_uint16_frames, "must be float"),
    "tif-and-tiff": (lambda d: shutil.copy(d / "Scene-281-in-2.tif", d / "Scene-281-in-2.tiff"), "the same file"),
    "frame-9": (lambda d: shutil.copy(d / "Scene-281-in-2.tif", d / "Scene-281-in-9.tif"), "Scene-281-in-9.tif"),
    "four-digit-scene": (
        lambda d: shutil.copy(d / "Scene-281-in-2.tif", d / "Scene-1282-in-0.tif"),
        "Scene-1282-in-0.tif",
    ),
    "letters-scene": (
        lambda d: shutil.copy(d / "Scene-281-in-2.tif", d / "Scene-abc-in-0.tif"),
        "not a RawFusion name",
    ),
    "huge-frame-header": (lambda d: declare_huge(d / "Scene-281-in-0.tif", 30000, 60000), "refused before decoding"),
}


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_is_one_line_naming_the_file(tmp_path, data, case):
    damage, needle = DATA_CASES[case]
    damage(data)
    code, out = _run("evaluate", "--model", "demosaic", "--data", data, "--out", tmp_path / "run")
    assert code == 2 and needle in _one_error(out)
    assert not (tmp_path / "run" / "summary.json").exists()


def test_data_check_reports_a_huge_header_without_decoding(tmp_path, data):
    declare_huge(data / "Scene-281-in-0.tif", 30000, 60000)
    code, out = _run("data", "check", data)
    assert code == 1 and "Scene-281" in out and "refused before decoding" in out


def test_corrupt_dataset_json_is_data_without_metadata(tmp_path, data):
    (data / "dataset.json").write_text("{not json")
    code, out = _run("evaluate", "--model", "demosaic", "--data", data, "--out", tmp_path / "run")
    assert code == 0, out


def test_test_split_scenes_need_no_ground_truth(tmp_path, data):
    (data / "Scene-281-gt.tif").unlink()
    code, out = _run(
        "evaluate",
        "--model",
        "demosaic",
        "--data",
        data,
        "--split",
        "test",
        "--scenes",
        "281",
        "--out",
        tmp_path / "run",
    )
    assert code == 0, out
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["num_scored"] == 0


# --------------------------------------------------------------------------- options out of range: one line, exit 2

BAD_OPTIONS = [
    ("scenes-huge-range", ["evaluate", "--model", "demosaic", "--scenes", "0-150000000"], "three digits"),
    ("scenes-enormous", ["evaluate", "--model", "demosaic", "--scenes", "0-999999999999"], "three digits"),
    ("overlap-without-tile", ["evaluate", "--model", "demosaic", "--overlap", "8"], "--overlap needs --tile"),
    ("negative-tile", ["evaluate", "--model", "demosaic", "--tile", "-3"], "--tile"),
    ("budget-huge", ["budget", "--model", "demosaic", "--size", "100000x100000"], "--size"),
    ("budget-4096", ["budget", "--model", "demosaic", "--size", "4096x8192"], "--size"),
    ("synth-negative", ["data", "synth", "OUT", "--train-scenes", "-3"], "--train-scenes"),
    ("synth-nothing", ["data", "synth", "OUT", "--train-scenes", "0", "--val-scenes", "0"], "at least one scene"),
    ("synth-huge", ["data", "synth", "OUT", "--size", "100000x100000"], "--size"),
    ("synth-large", ["data", "synth", "OUT", "--size", "16384x32768"], "--size"),
] + [
    (f"train{'-'.join(opt)}", ["train", "--model", "flowcnrdb_tiny", "--out", "T", *opt], opt[0])
    for opt in (
        ("--iters", "-5"),
        ("--iters", "0"),
        ("--lr", "0"),
        ("--lr", "-1e-3"),
        ("--lr", "nan"),
        ("--batch", "0"),
        ("--crop", "0"),
        ("--val-every", "0"),
        ("--log-every", "0"),
        ("--workers", "-1"),
        ("--val-crop", "0"),
    )
]


@pytest.mark.parametrize("case,args,needle", BAD_OPTIONS, ids=[c[0] for c in BAD_OPTIONS])
def test_out_of_range_options_are_one_line(tmp_path, case, args, needle):
    code, out = _run(*[str(tmp_path / a) if a in ("OUT", "T") else a for a in args])
    assert code == 2 and needle in _one_error(out)
    assert not (tmp_path / "OUT").exists() and not (tmp_path / "T").exists()


def test_train_crop_larger_than_the_scenes(tmp_path, small_data):
    code, out = _run(
        "train", "--model", "flowcnrdb_tiny", "--data", small_data, "--out", tmp_path / "t", "--crop", "128"
    )
    assert code == 2 and "too small for --crop 128" in _one_error(out)
    assert "take --crop 32 at most" in _one_error(out)  # 64-pixel scenes, crops of a multiple of 32 and 2 spare
    code, out = _run(
        "train", "--model", "flowcnrdb_tiny", "--data", small_data, "--out", tmp_path / "t", "--crop", "48"
    )
    assert (
        code == 2 and "--crop 48" in _one_error(out) and "multiples of 32" in _one_error(out)
    )  # before any estimate or forward
    assert not (tmp_path / "t").exists()


# --------------------------------------------------------------------------- run integrity


def _evaluated(tmp_path: Path, small_data: Path, *extra: str) -> Path:
    """A complete demosaic run of the small data's validation scenes, in tmp_path/R."""
    run = tmp_path / "R"
    code, out = _run("evaluate", "--model", "demosaic", "--data", small_data, "--out", run, *extra)
    assert code == 0, out
    return run


def test_a_killed_forced_run_is_never_packaged_as_a_mixture(tmp_path, small_data):
    run = tmp_path / "R"
    assert _run("evaluate", "--model", "demosaic", "--split", "all", "--data", small_data, "--out", run)[0] == 0

    def kill_after_two(done, total, note=""):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate(
            EvalConfig("flowcnrdb_tiny", random_init=True, split="all", data=small_data, out=run, force=True),
            kill_after_two,
        )
    assert not (run / "summary.json").exists()
    assert json.loads((run / "run.json").read_text())["model"] == "flowcnrdb_tiny"
    assert sorted(p.name for p in (run / "res").iterdir()) == ["Scene-000-out.tif", "Scene-001-out.tif"]
    for command in (["package", "results", run, "--out", tmp_path / "s.zip"], ["report", run]):
        code, out = _run(*command)
        assert code == 2 and "incomplete run" in _one_error(out)
    assert not (tmp_path / "s.zip").exists()
    assert (
        _run(
            "evaluate",
            "--model",
            "flowcnrdb_tiny",
            "--random-init",
            "--split",
            "all",
            "--data",
            small_data,
            "--out",
            run,
        )[0]
        == 0
    )
    assert _run("package", "results", run, "--out", tmp_path / "s.zip")[0] == 0


def test_force_with_fewer_scenes_leaves_only_the_new_run(tmp_path, small_data):
    run = _evaluated(tmp_path, small_data)
    assert (
        _run(
            "evaluate",
            "--model",
            "flowcnrdb_tiny",
            "--random-init",
            "--data",
            small_data,
            "--out",
            run,
            "--force",
            "--scenes",
            "281",
        )[0]
        == 0
    )
    assert [p.name for p in (run / "res").iterdir()] == ["Scene-281-out.tif"]
    assert list(pd.read_csv(run / "metrics.csv")["scene"]) == ["Scene-281"]
    code, out = _run("score", run / "res", "--gt", small_data, "--out", tmp_path / "score")
    assert code == 0 and json.loads((tmp_path / "score" / "summary.json").read_text())["num_scenes"] == 1


def test_a_folder_without_run_json_is_not_reused(tmp_path, small_data):
    run = _evaluated(tmp_path, small_data)
    (run / "run.json").unlink()
    code, out = _run("evaluate", "--model", "flowcnrdb_tiny", "--random-init", "--data", small_data, "--out", run)
    assert code == 2 and "no run.json" in _one_error(out)


def test_data_regenerated_at_the_same_path_is_not_reused(tmp_path, data):
    run = tmp_path / "R"
    assert _run("evaluate", "--model", "demosaic", "--data", data, "--out", run)[0] == 0
    arr = tifffile.imread(data / "Scene-282-in-3.tif")
    _write_frame(data / "Scene-282-in-3.tif", arr + 0.01)
    code, out = _run("evaluate", "--model", "demosaic", "--data", data, "--out", run)
    assert code == 2 and "Scene-282" in _one_error(out) and "data changed" in out


def test_a_tampered_output_is_refused_by_package_and_report(tmp_path, small_data):
    run = _evaluated(tmp_path, small_data)
    out_file = run / "res" / "Scene-280-out.tif"
    img = tifffile.imread(out_file)
    img[0, 0, 0] ^= 1
    tifffile.imwrite(out_file, img, photometric="rgb")
    for command in (["package", "results", run, "--out", tmp_path / "s.zip"], ["report", run]):
        code, out = _run(*command)
        assert code == 2 and "Scene-280-out.tif is not the output its row recorded" in _one_error(out)


def test_leftover_temporary_files_are_swept(tmp_path, small_data):
    run = tmp_path / "R"
    assert _run("evaluate", "--model", "demosaic", "--data", small_data, "--out", run, "--scenes", "280")[0] == 0
    (run / ".metrics.csv.abc123.partial").write_text("half")
    (run / "res" / ".Scene-281-out.tif.x.partial").write_bytes(b"half")
    assert _run("evaluate", "--model", "demosaic", "--data", small_data, "--out", run, "--scenes", "280")[0] == 0
    assert not list(run.glob(".*")) and not list((run / "res").glob(".*"))


@pytest.mark.parametrize("name", ["run.json", "metrics.csv", "summary.json"])
def test_corrupt_run_files_are_one_line(tmp_path, small_data, name):
    run = _evaluated(tmp_path, small_data)
    (run / name).write_bytes(b"\x00\xff{not")
    evaluate = ["evaluate", "--model", "demosaic", "--data", small_data, "--out", run]
    code, out = _run(*(evaluate if name == "run.json" else ["report", run, "--no-budget"]))
    assert code == 2 and name in _one_error(out)
    if name == "metrics.csv":  # rows changed since the run sealed them are computed again
        assert _run(*evaluate)[0] == 0 and _run("report", run, "--no-budget")[0] == 0


def test_random_init_wins_over_bundled_weights(tmp_path, small_data):
    code, out = _run(
        "evaluate", "--model", "flowcnrdb_tiny", "--random-init", "--data", small_data, "--out", tmp_path / "r"
    )
    assert code == 0 and json.loads((tmp_path / "r" / "summary.json").read_text())["weights"] == "random-init"


def test_an_output_folder_that_is_a_file(tmp_path, small_data):
    (tmp_path / "afile").write_text("x")
    code, out = _run("evaluate", "--model", "demosaic", "--data", small_data, "--out", tmp_path / "afile")
    assert code == 2 and "afile" in _one_error(out)


def test_an_undecodable_byte_in_the_data_path_does_not_break_the_report(tmp_path, small_data):
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/data-\xff"))
    shutil.copytree(small_data, odd)
    code, out = _run("evaluate", "--model", "demosaic", "--data", odd, "--out", tmp_path / "r")
    assert code == 0, out
    assert (tmp_path / "r" / "report.html").is_file()


def test_report_refuses_a_foreign_or_other_models_budget(tmp_path, small_data):
    assert _run("evaluate", "--model", "demosaic", "--data", small_data, "--out", tmp_path / "r", "--no-report")[0] == 0
    (tmp_path / "foreign.json").write_text('{"hello": 1}')
    code, out = _run("report", tmp_path / "r", "--budget-json", tmp_path / "foreign.json")
    assert code == 2 and "not a `harness budget --json` document" in _one_error(out)
    result = runner.invoke(
        app, ["budget", "--model", "flowcnrdb_tiny", "--size", "64x128", "--counters", "analytic", "--json"]
    )
    (tmp_path / "tiny.json").write_text(result.stdout)
    code, out = _run("report", tmp_path / "r", "--budget-json", tmp_path / "tiny.json")
    assert code == 2 and "not of this run's demosaic" in _one_error(out)


# --------------------------------------------------------------------------- training resume


def _train(out: Path, data: Path, *extra: str) -> tuple[int, str]:
    return _run(
        "train",
        "--model",
        "flowcnrdb_tiny",
        "--data",
        data,
        "--out",
        out,
        "--iters",
        "4",
        "--crop",
        "32",
        "--batch",
        "2",
        "--val-every",
        "2",
        "--log-every",
        "1",
        "--val-crop",
        "64",
        "--workers",
        "0",
        *extra,
    )


def test_resume_refuses_a_changed_schedule_and_keeps_its_config(tmp_path, small_data):
    assert _train(tmp_path / "t", small_data, "--stop-after", "1")[0] == 0
    before = (tmp_path / "t" / "config.json").read_bytes()
    for change in (("--iters", "8"), ("--batch", "3"), ("--lr", "1e-3"), ("--seed", "5"), ("--crop", "64")):
        code, out = _run(
            "train",
            "--model",
            "flowcnrdb_tiny",
            "--data",
            small_data,
            "--out",
            tmp_path / "t",
            "--iters",
            "4",
            "--crop",
            "32",
            "--batch",
            "2",
            "--workers",
            "0",
            "--resume",
            *change,
        )
        if change[0] == "--iters":
            code, out = _run(
                "train",
                "--model",
                "flowcnrdb_tiny",
                "--data",
                small_data,
                "--out",
                tmp_path / "t",
                "--crop",
                "32",
                "--batch",
                "2",
                "--workers",
                "0",
                "--resume",
                *change,
            )
        assert code == 2 and change[0] in _one_error(out)
    assert (tmp_path / "t" / "config.json").read_bytes() == before


def test_resume_with_a_corrupt_state_is_one_line(tmp_path, small_data):
    assert _train(tmp_path / "t", small_data, "--stop-after", "1")[0] == 0
    (tmp_path / "t" / "state.pth").write_bytes(b"garbage")
    code, out = _train(tmp_path / "t", small_data, "--resume")
    assert code == 2 and "state.pth" in _one_error(out)


def test_overlapping_train_and_val_scenes_warn(tmp_path, small_data):
    code, out = _train(
        tmp_path / "t", small_data, "--stop-after", "1", "--train-scenes", "0,281", "--val-scenes", "281"
    )
    assert code == 0 and "warning: scene(s) Scene-281 both train and validate" in out


# --------------------------------------------------------------------------- checkpoints


def _state() -> dict[str, torch.Tensor]:
    return create_model("flowcnrdb_tiny").state_dict()


CHECKPOINTS: dict[str, tuple[Callable[[], object], str | None]] = {
    "random-bytes": (lambda: None, "not a PyTorch checkpoint"),
    "int32-weights": (lambda: {k: v.to(torch.int32) for k, v in _state().items()}, "wrong dtype"),
    "bool-weights": (lambda: {k: v.bool() for k, v in _state().items()}, "wrong dtype"),
    "both-prefixed-and-not": (lambda: {**_state(), **{f"module.{k}": v for k, v in _state().items()}}, "twice"),
    "sparse": (lambda: {k: (v.to_sparse() if i == 0 else v) for i, (k, v) in enumerate(_state().items())}, "dense"),
    "orig-mod-module": (lambda: {f"_orig_mod.module.{k}": v for k, v in _state().items()}, None),
}


@pytest.mark.parametrize("case", CHECKPOINTS)
def test_checkpoints(tmp_path, small_data, case):
    make, needle = CHECKPOINTS[case]
    path = tmp_path / "w.pth"
    obj = make()
    if obj is None:
        path.write_bytes(b"\x13\x37garbage" * 512)
    else:
        torch.save(obj, path)
    code, out = _run(
        "evaluate",
        "--model",
        "flowcnrdb_tiny",
        "--weights",
        path,
        "--data",
        small_data,
        "--out",
        tmp_path / "r",
        "--scenes",
        "280",
    )
    if needle is None:
        assert code == 0, out
    else:
        assert code == 2 and needle in _one_error(out) and "weights_only=False" not in out


# --------------------------------------------------------------------------- zips and outputs from anyone


def _zip_cases(zip_path: Path, case: str, out_tif: Path) -> None:
    with zipfile.ZipFile(zip_path, "w") as zf:
        if case == "lying-size":
            zf.writestr("Scene-280-out.tif", b"x" * 5000)
        elif case == "corrupt-data":
            zf.writestr(zipfile.ZipInfo("Scene-280-out.tif"), out_tif.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)
        elif case in ("encrypted", "unknown-compression"):
            zf.writestr("Scene-280-out.tif", out_tif.read_bytes())
        elif case == "dir-file-clash":
            zf.writestr("x.tif/Scene-280-out.tif", b"x")
            zf.writestr("x.tif", b"x")
        elif case == "long-name":
            zf.writestr("d" * 300 + ".tif", b"x")
    raw = bytearray(zip_path.read_bytes())
    if case == "lying-size":  # the central directory and local header say 50 bytes: extraction finds more
        raw = raw.replace((5000).to_bytes(4, "little"), (50).to_bytes(4, "little"))
    elif case == "corrupt-data":
        mid = raw.find(b"Scene-280-out.tif") + 100
        raw[mid : mid + 64] = bytes(64)
    elif case == "encrypted":
        for sig in (b"PK\x03\x04", b"PK\x01\x02"):
            at = raw.find(sig)
            flag_at = at + (6 if sig == b"PK\x03\x04" else 8)
            raw[flag_at] |= 1
    elif case == "unknown-compression":
        for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
            at = raw.find(sig)
            raw[at + off : at + off + 2] = (99).to_bytes(2, "little")
    zip_path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "case", ["lying-size", "corrupt-data", "encrypted", "unknown-compression", "dir-file-clash", "long-name"]
)
def test_broken_zips_are_one_line(tmp_path, small_data, case):
    run = tmp_path / "R"
    assert _run("evaluate", "--model", "demosaic", "--data", small_data, "--out", run, "--scenes", "280")[0] == 0
    _zip_cases(tmp_path / "z.zip", case, run / "res" / "Scene-280-out.tif")
    code, out = _run("package", "verify", tmp_path / "z.zip")
    assert code == 2 and "z.zip" in _one_error(out)


def _zip_outputs(run: Path, zip_path: Path, folder: str = "", again: str | None = None) -> Path:
    """A zip of a run's outputs under ``folder``, with the output ``again`` stored a second time."""
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted((run / "res").iterdir()):
            zf.write(p, f"{folder}{p.name}")
        if again:
            zf.write(run / "res" / again, again)
    return zip_path


def test_duplicate_members_are_noted_and_expect_scenes_checked(tmp_path, small_data):
    zip_path = _zip_outputs(_evaluated(tmp_path, small_data), tmp_path / "dup.zip", again="Scene-280-out.tif")
    code, out = _run("package", "verify", zip_path)
    assert code == 0 and "appears more than once" in out
    code, out = _run("package", "verify", zip_path, "--expect-scenes", "280-283")
    assert code == 2 and "--expect-scenes" in _one_error(out)
    code, out = _run("package", "verify", zip_path, "--expect-scenes", "281-359")
    assert "differ from --expect-scenes: missing 77 (283-359), unexpected 1 (280)" in _one_error(out)
    code, out = _run("package", "results", tmp_path / "R", "--expect-scenes", "280-299", "--out", tmp_path / "r.zip")
    assert "differ from the run's scenes: missing 17 (283-299)" in _one_error(out) and not (tmp_path / "r.zip").exists()


def test_verify_descends_one_level_like_the_server(tmp_path, small_data):
    zip_path = _zip_outputs(_evaluated(tmp_path, small_data), tmp_path / "deep.zip", folder="a/b/")
    code, out = _run("package", "verify", zip_path)
    assert code == 2 and "no *.tif outputs" in _one_error(out)


def test_outputs_of_different_or_excessive_sizes_are_refused(tmp_path, small_data):
    run = _evaluated(tmp_path, small_data)
    big = tmp_path / "Scene-281-out.tif"
    declare_huge(big, 20000, 40000, channels=3)
    zip_path = tmp_path / "mixed.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.write(run / "res" / "Scene-280-out.tif", "Scene-280-out.tif")
        zf.write(big, big.name)
    code, out = _run("package", "verify", zip_path)
    assert code == 2 and "Scene-281-out.tif" in _one_error(out)
    small = tmp_path / "small.zip"
    with zipfile.ZipFile(small, "w") as zf:
        zf.write(run / "res" / "Scene-280-out.tif", "Scene-280-out.tif")
        zf.writestr("Scene-281-out.tif", _tiff_bytes(np.zeros((32, 64, 3), np.uint8)))
    code, out = _run("package", "verify", small)
    line = _one_error(out)
    assert code == 2 and "different sizes" in line and "Scene-280-out.tif is 64x128x3" in line
    assert "Scene-281-out.tif is 32x64x3" in line and "small.zip:" in line
    code, out = _run("package", "verify", small, "--gt", small_data)
    assert code == 2 and "expected 64x128" in _one_error(out)


def _tiff_bytes(img: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    tifffile.imwrite(buf, img, photometric="rgb")
    return buf.getvalue()


def test_many_megabyte_members_are_refused_as_a_bomb(tmp_path):
    zip_path = tmp_path / "many.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(20):
            zf.writestr(f"Scene-{300 + i}-out.tif", bytes(1024**2))
    code, out = _run("package", "verify", zip_path)
    assert code == 2 and "zip bomb" in _one_error(out)


def test_manifests_are_validated(tmp_path):
    for text, needle in (
        (
            '[team]\nid = "01"\nname = "T"\n[model]\nregistered = "flowcnrdb_tiny"\nname = "x/../../../ESCAPED"\n',
            "[A-Za-z0-9_]+",
        ),
        ('team = 5\n[model]\nregistered = "flowcnrdb_tiny"\nname = "X"\n', "[team]"),
    ):
        (tmp_path / "m.toml").write_text(text)
        code, out = _run("package", "code", tmp_path / "m.toml", cwd=tmp_path)
        assert code == 2 and needle in _one_error(out)
        assert not list(tmp_path.parent.glob("*ESCAPED*")) and not list(tmp_path.glob("*.zip"))


def test_score_warns_about_what_it_did_not_score(tmp_path, small_data):
    run = tmp_path / "R"
    assert _run("evaluate", "--model", "demosaic", "--data", small_data, "--out", run, "--scenes", "280,281")[0] == 0
    res = run / "res"
    shutil.copy(res / "Scene-281-out.tif", res / "Scene-282-out.tiff")
    img = tifffile.imread(res / "Scene-281-out.tif")
    tifffile.imwrite(res / "Scene-281-out.tif", np.ascontiguousarray(img[..., ::-1]), photometric="rgb")
    code, out = _run("score", "res", "--gt", small_data, cwd=run)
    assert code == 0, out
    assert "Scene-282-out.tiff: ignored" in out and "scored 2 of the 7 ground-truth scenes" in out
    assert "Scene-281: PSNR rises by" in out
    code, out = _run("score", ".", "--gt", small_data, "--out", tmp_path / "s2", cwd=res)
    assert code == 0, out
    (res / "Scene-282-out.tiff").unlink()
    zipped = _zip_outputs(run, tmp_path / "swapped.zip")
    code, out = _run("package", "verify", zipped, "--gt", small_data)  # the same check as score's
    assert code == 0 and "note: Scene-281: PSNR rises by" in out and "Scene-280: PSNR rises" not in out, out


# --------------------------------------------------------------------------- memory: bombs never decoded

# VmHWM, not getrusage: Linux carries ru_maxrss across exec, so a child started from a large pytest process would
# report the parent's peak; VmHWM is this process's own high-water mark.
PEAK = textwrap.dedent("""
    import sys
    from typer.testing import CliRunner
    from harness.cli import app
    result = CliRunner().invoke(app, sys.argv[1:])
    status = open("/proc/self/status").read()
    peak = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024
    print("EXIT", result.exit_code, "PEAK_MB", int(peak))
    print(result.output)
""")


def _peak(*args: str) -> tuple[int, int, str]:
    proc = subprocess.run([sys.executable, "-c", PEAK, *map(str, args)], capture_output=True, text=True, timeout=300)
    head = proc.stdout.split()
    return int(head[1]), int(head[3]), proc.stdout


def test_tiff_bombs_stay_under_1_gb(tmp_path, small_data):
    res = tmp_path / "res"
    res.mkdir()
    declare_huge(res / "Scene-280-out.tif", 40000, 80000, channels=3)
    code, peak, out = _peak("score", res, "--gt", small_data, "--out", tmp_path / "s")
    assert code == 2 and peak < 1024 and "40000x80000" in out, out
    zip_path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as zf:
        zf.write(res / "Scene-280-out.tif", "Scene-280-out.tif")
    code, peak, out = _peak("package", "verify", zip_path)
    assert code == 2 and peak < 1024 and "40000x80000" in out, out
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    declare_huge(data / "Scene-281-in-0.tif", 30000, 60000)
    code, peak, out = _peak("evaluate", "--model", "demosaic", "--data", data, "--out", tmp_path / "r")
    assert code == 2 and peak < 1024 and "30000x60000" in out, out
    code, peak, out = _peak("budget", "--model", "demosaic", "--size", "100000x100000")
    assert code == 2 and peak < 1024, out


@pytest.mark.parametrize("command", ["synth", "evaluate", "score", "train", "package", "compare"])
def test_writing_where_a_file_stands_is_one_line(tmp_path, small_data, command):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    run = _evaluated(tmp_path, small_data) if command in ("score", "package", "compare") else None
    args = {
        "synth": ["data", "synth", blocker / "sub", "--train-scenes", "1", "--val-scenes", "0", "--size", "64x128"],
        "evaluate": ["evaluate", "--model", "demosaic", "--data", small_data, "--out", blocker / "run"],
        "score": ["score", run / "res" if run else "", "--gt", small_data, "--out", blocker / "s"],
        "train": [
            "train",
            "--model",
            "flowcnrdb_tiny",
            "--data",
            small_data,
            "--out",
            blocker,
            "--iters",
            "1",
            "--crop",
            "32",
            "--batch",
            "1",
            "--workers",
            "0",
        ],
        "package": ["package", "results", run or "", "--out", blocker / "s.zip"],
        "compare": ["compare", run or "", run or "", "--out", blocker / "c.html"],
    }[command]
    code, out = _run(*args)
    assert code == 2 and "afile" in _one_error(out)


def test_no_command_writes_into_a_run_it_only_reads(tmp_path, small_data):
    run = _evaluated(tmp_path, small_data)
    before = {p.name: p.read_bytes() for p in (*run.iterdir(), *(run / "res").iterdir()) if p.is_file()}
    other = tmp_path / "other"
    assert _run("evaluate", "--model", "flowcnrdb_tiny", "--data", small_data, "--out", other, "--no-report")[0] == 0
    code, out = _run("score", other / "res", "--gt", small_data, "--out", run)
    assert code == 2 and "holds a `harness evaluate` run" in _one_error(out)
    for args in (
        ("package", "results", run, "--out", run / "metrics.csv"),
        ("report", run, "--out", run / "summary.json", "--no-budget"),
        ("compare", other, run, "--out", run / "res" / "Scene-281-out.tif", "--no-budget"),
        ("report", run, "--out", small_data / "Scene-280-gt.tif", "--no-budget"),
    ):
        code, out = _run(*args)
        assert code == 2 and "an input of this command" in _one_error(out), args
    after = {p.name: p.read_bytes() for p in (*run.iterdir(), *(run / "res").iterdir()) if p.is_file()}
    assert after == before
    assert _run("package", "results", run, "--out", tmp_path / "ok.zip")[0] == 0  # the run is whole
    assert _run("score", other / "res", "--gt", small_data, "--out", tmp_path / "s")[0] == 0
    code, out = _run("score", run / "res", "--gt", small_data, "--out", tmp_path / "s")  # other outputs, same folder
    assert code == 2 and "holds the scores of" in _one_error(out)
    assert _run("score", other / "res", "--gt", small_data, "--out", tmp_path / "s")[0] == 0  # the same: rescored


# --------------------------------------------------------------------------- somebody else's code, failing

CONV = "from torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.c = nn.Conv2d(9, 3, 1)\n"
HOSTILE = {
    "exits_at_import": (
        "import sys\nsys.exit(0)\n" + CONV,
        "exits_at_import.py:2: exits_at_import.py's import called sys.exit(0)",
    ),
    "parses_argv": (
        "import argparse\np = argparse.ArgumentParser()\np.add_argument('--lr', required=True)\np.parse_args()\n"
        + CONV,
        "exited at import, saying: parses_argv.py: error: the following arguments are required: --lr",
    ),
    "raises": (
        CONV + "\n    def forward(self, x):\n        raise RuntimeError('boom')\n",
        "raises.py:10: the model's forward pass raised RuntimeError: boom",
    ),
    "runs_out_of_memory": (
        CONV
        + "\n    def forward(self, x):\n        import torch\n        raise torch.OutOfMemoryError('CUDA out of memory')\n",
        "runs_out_of_memory.py:11: the model's forward pass raised OutOfMemoryError: CUDA out of memory",
    ),
    "exits_in_forward": (
        CONV + "\n    def forward(self, x):\n        raise SystemExit(0)\n",
        "exits_in_forward.py:10: the model's forward pass called sys.exit(0)",
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_somebody_elses_code_failing_is_one_line_naming_its_file_and_line(tmp_path, small_data, name):
    text, said = HOSTILE[name]
    (tmp_path / f"{name}.py").write_text(text)
    code, out = _run(
        "evaluate",
        "--model",
        f"{tmp_path / name}.py:Net",
        "--data",
        small_data,
        "--out",
        tmp_path / "run",
        "--random-init",
    )
    assert code == 2 and said in _one_error(out), out
    assert not (tmp_path / "run").exists()  # failed before its first scene: nothing half-written


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ('{"stem_width": -1}', "flowcnrdb_tiny cannot be built with them (RuntimeError"),
        ('"wide"', "expected a JSON object or array, got str"),
        ('{"stem_width": 1e999}', "inf (a number beyond float range) is not a number"),
        (
            '{"reg_widths": [16, 32], "reg_depths": [1]}',
            "cannot be built with them (ValueError: reg_widths and reg_depths",
        ),
        ("[" * 3000 + "]" * 3000, "nested too deeply"),
    ],
)
def test_bad_model_arguments_are_one_line(args, said):
    code, out = _run(
        "budget", "--model", "flowcnrdb_tiny", "--model-args", args, "--size", "64x128", "--counters", "analytic"
    )
    assert code == 2 and said in _one_error(out)


def _demo_submission(root: Path, demo: str) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "models" / "Model_09_Net.py").write_text(CONV + "\n    def forward(self, x):\n        return self.c(x)\n")
    (root / "test_demo.py").write_text(demo)
    return root


def test_a_hostile_test_demo_is_refused_in_one_line_within_memory(tmp_path):
    header = "from models.Model_09_Net import Net\n"
    nested = _demo_submission(
        tmp_path / "nested", header + "model = Net(" + "(" * 100_000 + "1" + ")" * 100_000 + ")\n"
    )
    code, out = _run("budget", "--model", f"submission:{nested}", "--trust-code", "--size", "64x128")
    assert code == 2 and "test_demo.py: unreadable (too many nested parentheses" in _one_error(out)
    deep = _demo_submission(tmp_path / "deep", header + "model = Net(" + "-" * 100_000 + "1)\n")
    code, out = _run("budget", "--model", f"submission:{deep}", "--trust-code", "--size", "64x128")
    assert code == 2 and "test_demo.py" in _one_error(out)
    huge = _demo_submission(
        tmp_path / "huge", header + "".join(f"x{i} = {i}\n" for i in range(300_000)) + "model = Net()\n"
    )
    code, peak, out = _peak("budget", "--model", f"submission:{huge}", "--trust-code", "--size", "64x128")
    assert code == 2 and "a test_demo.py is parsed only up to" in out and peak < 1536, out


def test_hostile_checkpoints_are_refused_before_they_are_read(tmp_path, small_data):
    (tmp_path / "one.py").write_text(CONV + "\n    def forward(self, x):\n        return self.c(x)\n")
    model = f"{tmp_path / 'one.py'}:Net"
    torch.save(
        {"c.weight": torch.empty(3, 9, 1, 1, device="meta"), "c.bias": torch.empty(3, device="meta")},
        tmp_path / "meta.pth",
    )
    code, out = _run(
        "evaluate", "--model", model, "--weights", tmp_path / "meta.pth", "--data", small_data, "--out", tmp_path / "r"
    )
    assert code == 2 and "'c.weight' is a meta tensor" in _one_error(out)
    big = tmp_path / "big.pth"
    torch.save({"c.weight": torch.zeros(3, 9, 1, 1), "c.bias": torch.zeros(3)}, big)
    with (
        zipfile.ZipFile(big, "a", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
        zf.open("big/data/9", "w", force_zip64=True) as fh,
    ):
        for _ in range(18):
            fh.write(bytes(64 << 20))  # 1.1 GiB of tensor bytes, stored in 1 MB
    code, peak, out = _peak(
        "evaluate", "--model", model, "--weights", big, "--data", small_data, "--out", tmp_path / "r"
    )
    assert code == 2 and "holds 1.1 GiB unpacked" in out and peak < 1024, out


def _jpeg_bomb(path: Path, side: int) -> Path:
    """A 64x128 RGB TIFF whose one JPEG strip's frame header declares side x side (its decoder would allocate that)."""
    import imagecodecs

    small = imagecodecs.jpeg8_encode(np.zeros((64, 128, 3), np.uint8))
    at = small.find(b"\xff\xc0")
    patched = small[: at + 5] + side.to_bytes(2, "big") * 2 + small[at + 9 :]
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            iter([patched]), shape=(64, 128, 3), dtype="uint8", compression="jpeg", rowsperstrip=64, photometric="rgb"
        )
    return path


def test_compressed_tiffs_that_would_decode_beyond_their_header_stay_under_1_gb(tmp_path, small_data):
    res = tmp_path / "res"
    res.mkdir()
    _jpeg_bomb(res / "Scene-280-out.tif", 24000)
    code, peak, out = _peak("score", res, "--gt", small_data, "--out", tmp_path / "s")
    assert code == 2 and "a JPEG strip holds a 24000x24000 frame in a 64x128 image" in out and peak < 1024, out
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    tifffile.imwrite(
        data / "Scene-281-in-0.tif",
        np.zeros((2048, 2048, 100), np.float32),
        compression="zlib",
        photometric="minisblack",
        planarconfig="contig",
    )
    code, peak, out = _peak("data", "check", data)
    assert code == 1 and "float32 samples, more than the" in out and peak < 1024, out
    tifffile.imwrite(data / "Scene-281-in-0.tif", np.zeros((8, 8), np.float32), compression="zstd")
    code, out = _run("data", "check", data)
    assert code == 1 and "compression ZSTD is not one read here" in out


def test_frames_beyond_twice_the_challenge_side_are_refused_from_their_header(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(9):
        declare_huge(data / f"Scene-280-in-{i}.tif", 3008, 6016)
    code, peak, out = _peak(
        "evaluate", "--model", "demosaic", "--data", data, "--split", "test", "--out", tmp_path / "r"
    )
    assert code == 2 and "3008x6016" in out and peak < 1024, out


def _rezip(source: Path, target: Path, keep=lambda name: True, rename=lambda name: name) -> Path:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            if keep(info.filename):
                dst.writestr(rename(info.filename), src.read(info))
    return target


def test_zips_read_as_the_server_unzips_them(tmp_path, small_data, monkeypatch):
    run = _evaluated(tmp_path, small_data)
    plain = _zip_outputs(run, tmp_path / "plain.zip", folder="res/")
    mac = tmp_path / "mac.zip"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(mac, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr("__MACOSX/res/._.DS_Store", b"\x00\x05\x16\x07")  # no TIFF: never extracted, still an entry
    code, out = _run("package", "verify", mac)
    line = _one_error(out)
    assert code == 2 and "the server sees 2 entries at the top (__MACOSX, res)" in line and "zip -d mac.zip" in line
    code, out = _run(
        "package", "verify", _rezip(mac, tmp_path / "fixed.zip", keep=lambda n: not n.startswith("__MACOSX/"))
    )
    assert code == 0 and "from 'res'" in out  # the advice taken
    with monkeypatch.context() as m:  # names in CP437, as many zip tools write them (no UTF-8 flag)
        m.setattr(zipfile.ZipInfo, "_encodeFilenameFlags", lambda self: (self.filename.encode("cp437"), self.flag_bits))
        cp437 = _rezip(plain, tmp_path / "cp437.zip", rename=lambda n: n.replace("res/", "Résultats/"))
    assert not any(i.flag_bits & 0x800 for i in zipfile.ZipFile(cp437).infolist())
    code, out = _run("package", "verify", cp437, "--gt", small_data)
    assert code == 0 and "from 'Résultats'" in out and "PSNR" in out, out


def test_a_run_edited_by_hand_or_whose_data_changed_is_refused_and_a_rerun_mends_it(tmp_path, data):
    run = tmp_path / "R"
    evaluate = ("evaluate", "--model", "demosaic", "--data", data, "--out", run, "--no-report")
    assert _run(*evaluate)[0] == 0
    package = ("package", "results", run, "--out", tmp_path / "r.zip")
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "psnr": 41.38}))
    for args in (package, ("report", run, "--no-budget")):
        code, out = _run(*args)
        assert code == 2 and "summary.json was changed after the run wrote it" in _one_error(out)
    assert _run(*evaluate)[0] == 0 and _run(*package)[0] == 0  # the advice: rerun
    table = pd.read_csv(run / "metrics.csv")
    table.loc[0, "psnr"] = 99.0
    table.to_csv(run / "metrics.csv", index=False)
    code, out = _run(*package)
    assert code == 2 and "metrics.csv was changed after the run wrote it" in _one_error(out)
    assert _run(*evaluate)[0] == 0 and _run(*package)[0] == 0
    assert pd.read_csv(run / "metrics.csv")["psnr"].max() < 99  # the rerun recomputed the edited row, not reused it
    gt = data / "Scene-281-gt.tif"
    tifffile.imwrite(gt, np.clip(tifffile.imread(gt) * 0.9, 0, 1), photometric="rgb")
    code, out = _run("report", run, "--no-budget")
    assert code == 2 and "Scene-281-gt.tif is not the ground truth its row was scored against" in _one_error(out)
    assert _run(*evaluate, "--force")[0] == 0 and _run("report", run, "--no-budget")[0] == 0


def test_low_messages_name_what_they_are_about(tmp_path, small_data, monkeypatch):
    run = _evaluated(tmp_path, small_data)
    (run / "res" / "notes.txt").write_text("mine")
    code, out = _run("package", "results", run, "--out", tmp_path / "r.zip")
    assert code == 2 and f"{run}: res/notes.txt is not a Scene-XXX-out.tif name" in _one_error(out)
    with monkeypatch.context() as m:
        m.setattr(
            zipfile.ZipInfo, "_encodeFilenameFlags", lambda self: (b"Scene-280-out\xff.tif", self.flag_bits | 0x800)
        )
        with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
            zf.writestr("x.tif", b"abc")
    code, out = _run("package", "verify", tmp_path / "bad.zip")
    assert code == 2 and "bad.zip: member b'Scene-280-out\\xff.tif' is flagged UTF-8 but its name is not" in _one_error(
        out
    )
    with tarfile.open(tmp_path / "team.zip", "w") as tar:
        tar.add(small_data / "dataset.json", "test_demo.py")
    code, out = _run("budget", "--model", f"submission:{tmp_path / 'team.zip'}", "--trust-code")
    assert code == 2 and f"{tmp_path / 'team.zip'}: a tar archive, not a zip" in _one_error(out)


def test_an_error_under_json_is_a_json_document_too(tmp_path):
    result = invoke("budget", "--model", "nope", "--json")
    assert result.exit_code == 2 and json.loads(result.stdout) == {
        "error": _one_error(result.stderr)[7:],
        "exit_code": 2,
    }
    result = invoke("data", "check", tmp_path / "absent", "--json")
    assert result.exit_code == 2 and "no such data folder" in json.loads(result.stdout)["error"]


def test_a_slow_constructor_is_said_while_it_is_awaited(tmp_path, monkeypatch):
    monkeypatch.setattr("harness.foreign.WAIT_NOTE_S", 0.2)
    (tmp_path / "slow.py").write_text(
        "import time\n" + CONV.replace("super().__init__()", "super().__init__()\n        time.sleep(1.0)")
    )
    result = invoke("budget", "--model", f"{tmp_path / 'slow.py'}:Net", "--size", "64x128", "--counters", "analytic")
    assert (
        result.exit_code == 0 and "still waiting for" in result.stderr and "construction after 0.2 s" in result.stderr
    )
