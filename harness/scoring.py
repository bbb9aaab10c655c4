"""Scoring outputs the way the Codalab scoring program did.

The server reads every ``*.tif`` of the submitted folder (descending into it
when it holds exactly one entry), pairs ``Scene-XXX-out.tif`` with
``Scene-XXX-gt.tif``, truncates the ground truth to uint8 and averages the
per-image PSNR (and SSIM) over the files.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from harness.challenge import CROSS_CHECK_TOL, SERVER_SSIM_DATA_RANGE, scene_id
from harness.errors import HarnessError
from harness.io import read_gt, read_output
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
            raise HarnessError(f"{name}: {a} {row[a]!r} and its torch cross-check {row[b]!r} differ by more than {CROSS_CHECK_TOL}")
    return row


def server_folder(folder: Path) -> Path:
    """Descend into the only entry of ``folder`` when it is a folder, as the server did."""
    entries = sorted(folder.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder


def server_outputs(folder: Path) -> dict[int, Path]:
    """Scene number -> output file, for every ``*.tif`` the server would read."""
    folder = server_folder(folder)
    out: dict[int, Path] = {}
    for path in sorted(folder.glob("*.tif")):
        m = OUT_RE.match(path.name)
        if not m:
            raise HarnessError(f"{path}: the server expects names like Scene-XXX-out.tif")
        out[int(m.group(1))] = path
    if not out:
        raise HarnessError(f"{folder}: no *.tif outputs")
    return out


def score_folder(res_dir: Path, gt_dir: Path, progress: Progress | None = None) -> pd.DataFrame:
    """Per-scene metrics of a results folder against a ground-truth folder."""
    outputs = server_outputs(Path(res_dir))
    gt_dir = Path(gt_dir)
    gt_paths = {n: gt_dir / f"{scene_id(n)}-gt.tif" for n in outputs}
    missing = [p.name for p in gt_paths.values() if not p.is_file()]
    if missing:
        raise HarnessError(f"{gt_dir}: ground truth missing for {len(missing)} output(s): {', '.join(missing[:3])}")
    rows = []
    for k, (number, path) in enumerate(outputs.items()):
        row = {"scene": scene_id(number), **score_pair(read_gt(gt_paths[number]), read_output(path), path.name)}
        rows.append(row)
        notify(progress, k + 1, len(outputs), f"{row['scene']} {row['psnr']:.2f} dB")
    return pd.DataFrame(rows)


def score_run(res_dir: Path, gt_dir: Path, out: Path, progress: Progress | None = None) -> RunSummary:
    """Score a folder of outputs into a run folder (``metrics.csv``, ``summary.json``) at ``out``."""
    if not Path(res_dir).is_dir():
        raise HarnessError(f"{res_dir}: no such folder")
    table = score_folder(res_dir, gt_dir, progress)
    summary = RunSummary(
        **mean_scores(table),
        num_scenes=int(len(table)),
        num_scored=int(len(table)),
        scenes=list(table["scene"]),
        data=str(Path(gt_dir).resolve()),
        res=str(Path(res_dir).resolve()),
        command=" ".join(sys.argv),
    )
    folder = RunFolder(out)
    folder.write_metrics(table)
    folder.write_summary(summary)
    return summary
