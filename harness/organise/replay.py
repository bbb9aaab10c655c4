"""Replay: a team's uploaded results zip against the outputs the organiser re-ran from its code.

Per scene: identical bytes or not, the largest difference in 8-bit levels, the share of values that differ and the
server's PSNR of the upload against the re-run; per team a verdict: ``reproduced`` (every scene identical),
``reproduced within 1 level`` (with the likely cause named), ``not reproduced``; and, where the ground truth is at
hand, the upload's official scores, to set beside the re-run's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.archive import safe_extract
from harness.challenge import scene_id
from harness.errors import HarnessError
from harness.io import read_output, sha256_file
from harness.metrics import psnr
from harness.run import mean_scores
from harness.scoring import score_folder, server_outputs


def _cause(diffs: list[np.ndarray], uploaded: list[np.ndarray], rerun: list[np.ndarray]) -> str:
    """The likely reason outputs differ by one level at most."""
    if all(np.array_equal(u, r[..., ::-1]) for u, r in zip(uploaded, rerun)):
        return "red and blue swapped"
    signs = np.concatenate([d.ravel() for d in diffs])
    if signs.min() >= 0:
        return "rounding instead of truncation (uploaded values are never below the re-run's)"
    if signs.max() <= 0:
        return "truncation where the re-run rounded"
    return "arithmetic differences (another device, precision or library version)"


def replay(results_zip: Path, rerun_res: Path, gt_dir: Path | None = None) -> dict[str, Any]:
    """Compare the outputs in ``results_zip`` (read as the server read it) with those in ``rerun_res``; with the
    ground truth of every scene in ``gt_dir``, score the upload as the server did."""
    with tempfile.TemporaryDirectory(prefix="harness-replay-") as tmp:
        uploaded_folder = safe_extract(results_zip, Path(tmp)).server_folder(Path(tmp))
        uploaded_files = server_outputs(uploaded_folder)
        rerun_files = server_outputs(rerun_res)
        if set(uploaded_files) != set(rerun_files):
            raise HarnessError(
                f"{results_zip}: holds scenes {sorted(uploaded_files)}, the re-run {sorted(rerun_files)}"
            )
        scenes: list[dict[str, Any]] = []
        diffs, uploaded, rerun = [], [], []
        for number in sorted(rerun_files):
            same = sha256_file(uploaded_files[number]) == sha256_file(rerun_files[number])
            u, r = read_output(uploaded_files[number]), read_output(rerun_files[number])
            if u.shape != r.shape:
                raise HarnessError(f"{results_zip}: {scene_id(number)} is {u.shape}, the re-run's {r.shape}")
            d = u.astype(np.int16) - r.astype(np.int16)
            scenes.append(
                {
                    "scene": scene_id(number),
                    "identical": same,
                    "max_levels": int(np.abs(d).max()),
                    "differing": float(np.mean(d != 0)),
                    "psnr_vs_rerun": None if same or not d.any() else psnr(r, u),  # None: infinite
                }
            )
            diffs.append(d)
            uploaded.append(u)
            rerun.append(r)
        official = (
            mean_scores(score_folder(uploaded_folder, gt_dir))
            if gt_dir is not None and all((gt_dir / f"{scene_id(n)}-gt.tif").is_file() for n in rerun_files)
            else {}
        )
    worst = max(s["max_levels"] for s in scenes)
    if all(s["identical"] for s in scenes) or worst == 0:
        verdict, cause = "reproduced", ""
    elif worst <= 1:
        verdict, cause = "reproduced within 1 level", _cause(diffs, uploaded, rerun)
    else:
        verdict = "not reproduced"
        cause = "red and blue swapped" if _cause(diffs, uploaded, rerun) == "red and blue swapped" else ""
    uploaded_scores = {f"uploaded_{k}": official.get(k) for k in ("psnr", "ssim")}
    return {"verdict": verdict, "cause": cause, "max_levels": worst, **uploaded_scores, "scenes": scenes}
