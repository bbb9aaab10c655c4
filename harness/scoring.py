"""Scoring outputs the way the Codalab scoring program did.

The server reads every ``*.tif`` of the submitted folder (descending into it
when it holds exactly one entry), pairs ``Scene-XXX-out.tif`` with
``Scene-XXX-gt.tif``, truncates the ground truth to uint8 and averages the
per-image PSNR (and SSIM) over the files.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import tifffile

from harness.errors import HarnessError
from harness.metrics import psnr, psnr_torch, quantize_gt, ssim, ssim_standard, ssim_torch

OUT_RE = re.compile(r"^Scene-(\d{3})-out\.tif$")
CROSS_CHECK_TOL = 1e-6
METRIC_COLUMNS = ["psnr", "ssim", "ssim_standard", "psnr_torch", "ssim_torch"]


def score_pair(gt: np.ndarray, out_u8: np.ndarray, name: str = "") -> dict[str, float]:
    """All metrics of one output against its float ground truth (H, W, 3).

    The torch re-implementation must agree with scikit-image to 1e-6, else the
    run fails: a metric that silently drifts is worse than none.
    """
    gt_u8 = quantize_gt(np.ascontiguousarray(gt))  # the server held it contiguous: same rounding
    if gt_u8.shape != out_u8.shape:
        raise HarnessError(f"{name}: output is {out_u8.shape}, ground truth is {gt_u8.shape}")
    row = {
        "psnr": psnr(gt_u8, out_u8),
        "ssim": ssim(gt_u8, out_u8),
        "ssim_standard": ssim_standard(gt_u8, out_u8),
        "psnr_torch": psnr_torch(gt_u8, out_u8),
        "ssim_torch": ssim_torch(gt_u8, out_u8, 2.0),
    }
    for a, b in (("psnr", "psnr_torch"), ("ssim", "ssim_torch")):
        if not (row[a] == row[b] or abs(row[a] - row[b]) <= CROSS_CHECK_TOL):
            raise HarnessError(f"{name}: {a} {row[a]!r} and its torch cross-check {row[b]!r} differ by more than 1e-6")
    return row


def mean_scores(rows: pd.DataFrame) -> dict[str, float]:
    """Dataset score: the mean of the per-image values (as the server)."""
    return {k: float(rows[k].mean()) for k in ("psnr", "ssim", "ssim_standard")}


def read_output(path: Path) -> np.ndarray:
    """An output TIFF as uint8 H x W x 3, refusing anything else with one line."""
    try:
        img = tifffile.imread(path)
    except Exception as exc:
        raise HarnessError(f"{path}: unreadable TIFF ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if img.dtype != np.uint8:
        raise HarnessError(f"{path}: outputs must be 8-bit, got {img.dtype}")
    if img.ndim != 3 or img.shape[-1] != 3:
        raise HarnessError(f"{path}: outputs must be H x W x 3 RGB, got shape {img.shape}")
    return img


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


def score_folder(
    res_dir: str | Path, gt_dir: str | Path, progress: Callable[[str, dict[str, float]], None] | None = None
) -> pd.DataFrame:
    """Per-scene metrics of a results folder against a ground-truth folder."""
    outputs = server_outputs(Path(res_dir))
    gt_dir = Path(gt_dir)
    missing = [f"Scene-{n:03d}-gt.tif" for n in outputs if not (gt_dir / f"Scene-{n:03d}-gt.tif").is_file()]
    if missing:
        raise HarnessError(f"{gt_dir}: ground truth missing for {len(missing)} output(s): {', '.join(missing[:3])}")
    rows = []
    for number, path in outputs.items():
        gt = tifffile.imread(gt_dir / f"Scene-{number:03d}-gt.tif")  # float32 as stored: the server multiplied in float32
        row = {"scene": f"Scene-{number:03d}", **score_pair(gt, read_output(path), path.name)}
        rows.append(row)
        if progress:
            progress(row["scene"], row)
    return pd.DataFrame(rows)


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_finite(obj), indent=2, sort_keys=False) + "\n")


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write_text(path, frame.to_csv(index=False, float_format="%.17g"))


def _finite(obj: Any) -> Any:
    """JSON has no inf: identical images (PSNR inf) are written as the string 'inf'."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
