"""Scoring outputs the way the Codalab scoring program did.

The server reads every ``*.tif`` of the submitted folder (descending into it
when it holds exactly one entry), pairs ``Scene-XXX-out.tif`` with
``Scene-XXX-gt.tif``, truncates the ground truth to uint8 and averages the
per-image PSNR (and SSIM) over the files.
"""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from harness.challenge import CROSS_CHECK_TOL, SERVER_SSIM_DATA_RANGE, scene_id
from harness.errors import HarnessError, HarnessWarning
from harness.io import read_gt, read_output, sha256_file
from harness.metrics import psnr, psnr_torch, quantize_gt, ssim, ssim_standard, ssim_torch
from harness.progress import Progress, notify
from harness.run import RunFolder, RunSummary, mean_scores

OUT_RE = re.compile(r"^Scene-(\d{3})-out\.tif$")


def score_pair(gt: np.ndarray, out_u8: np.ndarray, name: str = "") -> dict[str, float]:
    """All metrics of one output against its float ground truth (H, W, 3).

    The torch re-implementation must agree with scikit-image to
    ``CROSS_CHECK_TOL``, else the run fails: a metric that silently drifts is
    worse than none.
    """
    gt_u8 = quantize_gt(np.ascontiguousarray(gt))  # the server held it contiguous: same rounding
    if gt_u8.shape != out_u8.shape:
        raise HarnessError(f"{name}: output is {out_u8.shape}, ground truth is {gt_u8.shape}")
    row = {
        "psnr": psnr(gt_u8, out_u8),
        "ssim": ssim(gt_u8, out_u8),
        "ssim_standard": ssim_standard(gt_u8, out_u8),
        "psnr_torch": psnr_torch(gt_u8, out_u8),
        "ssim_torch": ssim_torch(gt_u8, out_u8, SERVER_SSIM_DATA_RANGE),
    }
    for a, b in (("psnr", "psnr_torch"), ("ssim", "ssim_torch")):
        if not (row[a] == row[b] or abs(row[a] - row[b]) <= CROSS_CHECK_TOL):
            raise HarnessError(
                f"{name}: {a} {row[a]!r} and its torch cross-check {row[b]!r} differ by more than {CROSS_CHECK_TOL}"
            )
    return row


def server_folder(folder: Path) -> Path:
    """Descend into the only entry of ``folder`` when it is a folder, as the server did."""
    entries = sorted(folder.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder


def server_outputs(folder: Path) -> dict[int, Path]:
    """Scene number -> output file, for every ``*.tif`` the server would read in ``folder`` (already descended)."""
    out: dict[int, Path] = {}
    for path in sorted(folder.glob("*.tif")):
        m = OUT_RE.match(path.name)
        if not m:
            raise HarnessError(f"{path}: the server expects names like Scene-XXX-out.tif")
        out[int(m.group(1))] = path
    if not out:
        raise HarnessError(f"{folder}: no *.tif outputs")
    return out


def ignored_files(folder: Path) -> list[str]:
    """Files of a submitted folder the server would not read (it reads ``*.tif`` only): ``.tiff`` and others."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix != ".tif")


def gt_paths(outputs: dict[int, Path], gt_dir: Path) -> dict[int, Path]:
    paths = {n: gt_dir / f"{scene_id(n)}-gt.tif" for n in outputs}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise HarnessError(f"{gt_dir}: ground truth missing for {len(missing)} output(s): {', '.join(missing[:3])}")
    return paths


def score_folder(res_dir: Path, gt_dir: Path, progress: Progress | None = None) -> pd.DataFrame:
    """Per-scene metrics of a results folder (descended as the server did) against a ground-truth folder."""
    outputs = server_outputs(server_folder(Path(res_dir)))
    gts = gt_paths(outputs, Path(gt_dir))
    rows = []
    for k, (number, path) in enumerate(outputs.items()):
        gt = read_gt(gts[number])
        out = read_output(path, gt.shape[:2])
        scores = score_pair(gt, out, path.name)
        row: dict[str, object] = {"scene": scene_id(number), **scores}
        row["swapped_psnr_gain"] = swapped_gain(gt, out, scores["psnr"])
        row["gt_sha256"] = sha256_file(gts[number])
        rows.append(row)
        notify(progress, k + 1, len(outputs), f"{row['scene']} {row['psnr']:.2f} dB")
    return pd.DataFrame(rows)


def swapped_gain(gt: np.ndarray, out_u8: np.ndarray, psnr_as_written: float) -> float:
    """How much the PSNR would rise with red and blue swapped (> 3 dB: the output was likely written BGR)."""
    return psnr(quantize_gt(np.ascontiguousarray(gt)), np.ascontiguousarray(out_u8[..., ::-1])) - psnr_as_written


SWAP_WARNING_DB = 3.0
BGR_HINT = "was it written in BGR order (cv2.imwrite of an RGB array)?"


def swapped_outputs(table: pd.DataFrame) -> list[str]:
    """One line per scored output of ``table`` (from :func:`score_folder`) that scores far better with red and blue
    swapped: what ``score`` and ``package verify --gt`` both say."""
    return [
        f"{row['scene']}: PSNR rises by {row['swapped_psnr_gain']:.1f} dB with red and blue swapped; {BGR_HINT}"
        for row in table.to_dict("records")
        if row["swapped_psnr_gain"] > SWAP_WARNING_DB
    ]


def _check_target(folder: RunFolder, res_dir: Path, gt_dir: Path) -> None:
    """``score`` writes a score run of its own, or rewrites one of the same outputs and ground truth; any other
    folder (an evaluate run, another score, somebody's files, its own inputs) is refused."""
    root = folder.root.resolve()
    if root in (res_dir, gt_dir) or root in res_dir.parents or root in gt_dir.parents:
        raise HarnessError(f"--out {folder.root}: holds this command's inputs; choose another folder")
    if folder.settings_json.is_file():
        raise HarnessError(
            f"--out {folder.root}: holds a `harness evaluate` run; score writes a run of its own: choose another --out"
        )
    if folder.summary_json.is_file():
        previous = folder.read_summary()
        if previous.res != str(res_dir) or previous.data != str(gt_dir):
            raise HarnessError(
                f"--out {folder.root}: holds the scores of {previous.res} against {previous.data}; choose another --out"
            )
    elif root.is_dir() and any(root.iterdir()):
        raise HarnessError(f"--out {folder.root}: not empty and not a score run; choose another --out")


def score_run(res_dir: Path, gt_dir: Path, out: Path, progress: Progress | None = None) -> RunSummary:
    """Score a folder of outputs into a run folder (``metrics.csv``, ``summary.json``) at ``out``; warns about files the
    server ignores, ground truth left unscored, and outputs that score far better with red and blue swapped."""
    res_dir, gt_dir = Path(res_dir).resolve(), Path(gt_dir).resolve()
    if not res_dir.is_dir():
        raise HarnessError(f"{res_dir}: no such folder")
    _check_target(RunFolder(out), res_dir, gt_dir)
    table = score_folder(res_dir, gt_dir, progress)
    read_from = server_folder(res_dir)
    for name in ignored_files(read_from):
        warnings.warn(HarnessWarning(f"{read_from / name}: ignored (the server reads *.tif files only)"), stacklevel=2)
    present = len(list(gt_dir.glob("Scene-*-gt.tif")))
    if present > len(table):
        warnings.warn(
            HarnessWarning(
                f"scored {len(table)} of the {present} ground-truth scenes in {gt_dir}: the mean is over those {len(table)}"
            ),
            stacklevel=2,
        )
    for line in swapped_outputs(table):
        warnings.warn(HarnessWarning(line), stacklevel=2)
    summary = RunSummary(
        **mean_scores(table),
        num_scenes=int(len(table)),
        num_scored=int(len(table)),
        scenes=list(table["scene"]),
        data=str(gt_dir),
        res=str(res_dir),
        command=" ".join(sys.argv),
    )
    folder = RunFolder(out)
    folder.write_metrics(table)
    folder.write_summary(summary)
    return summary
