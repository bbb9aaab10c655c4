"""Images for the reports: data URIs, previews, error maps, crops, and the compare page's panels.

Crops are lossless PNG shown 1:1 (the pixels are the point); whole-image previews are WebP, downscaled.
Error maps of several runs share one colour scale, so their colours mean the same error.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from harness.data.scenes import Scene, reference_rgb
from harness.io import read_gt, read_output
from harness.metrics import quantize_gt

PREVIEW_WIDTH = 768
THUMB_WIDTH = 192
CROP = 96


def png_uri(img: np.ndarray) -> str:
    """uint8 H x W (x 3) -> lossless PNG data URI, pixel for pixel."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def webp_uri(img: np.ndarray, width: int | None = PREVIEW_WIDTH) -> str:
    """uint8 H x W x 3 -> WebP data URI, downscaled to ``width`` when wider (previews only, never crops)."""
    pil = Image.fromarray(img)
    if width and pil.width > width:
        pil = pil.resize((width, round(pil.height * width / pil.width)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    pil.save(buf, format="WEBP", quality=85, method=4)
    return "data:image/webp;base64," + base64.b64encode(buf.getvalue()).decode()


def thumb_uri(img: np.ndarray, width: int = THUMB_WIDTH) -> str:
    pil = Image.fromarray(img)
    pil = pil.resize((width, max(1, round(pil.height * width / pil.width))), Image.Resampling.LANCZOS)
    return png_uri(np.asarray(pil))


def preview(rgb: np.ndarray) -> np.ndarray:
    """The demosaiced reference frame, normalised and gamma-encoded for display."""
    scale = np.percentile(rgb, 99.5) or 1.0
    return (np.clip(rgb / scale, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)


def heatmap(err: np.ndarray, vmax: float | None = None, cmap: str = "inferno") -> np.ndarray:
    """An error map in colour; ``vmax`` (default: its own 99.5th percentile) fixes the scale."""
    vmax = vmax if vmax is not None else max(float(np.percentile(err, 99.5)), 1.0)
    return (plt.get_cmap(cmap)(np.clip(err / vmax, 0, 1))[..., :3] * 255).astype(np.uint8)


def box_argmax(err: np.ndarray, k: int = CROP) -> tuple[int, int]:
    """Top-left corner of the k x k crop with the largest mean of ``err``."""
    t = torch.from_numpy(np.ascontiguousarray(err, dtype=np.float64))[None, None]
    ky, kx = min(k, err.shape[0]), min(k, err.shape[1])
    pooled = torch.nn.functional.avg_pool2d(t, (ky, kx), stride=1)[0, 0]
    y, x = np.unravel_index(int(torch.argmax(pooled)), tuple(pooled.shape))
    return int(y), int(x)


def crop(img: np.ndarray, y0: int, x0: int, k: int = CROP) -> np.ndarray:
    return np.ascontiguousarray(img[y0 : y0 + k, x0 : x0 + k])


def compare_panels(scene: Scene, scene_id: str, labels: list[str], res_dirs: list[Path]) -> dict[str, Any]:
    """One scene across runs: 1:1 crops of the reference, each output, the ground truth, each run's error on one
    shared scale, and each run's difference to the first, at the place where the runs differ most."""
    outs = [read_output(res / f"{scene_id}-out.tif").astype(np.float64) for res in res_dirs]
    gt = quantize_gt(read_gt(scene.gt)) if scene.gt is not None else None
    errs = [np.abs(o - gt).mean(axis=-1) for o in outs] if gt is not None else []
    diffs = [np.abs(o - outs[0]).mean(axis=-1) for o in outs[1:]]
    y0, x0 = box_argmax(sum(diffs) if diffs else errs[0])
    err_max = max([float(np.percentile(e, 99.5)) for e in errs] + [1.0])
    diff_max = max([float(np.percentile(d, 99.5)) for d in diffs] + [1.0])
    panels: list[tuple[str, np.ndarray]] = []
    reference = reference_rgb(scene)
    if reference is not None:
        panels.append(("reference frame 0", preview(reference)))
    panels += [(f"output: {lb}", o.astype(np.uint8)) for lb, o in zip(labels, outs)]
    if gt is not None:
        panels.append(("ground truth (8-bit)", gt))
    panels += [(f"error: {lb} (0-{err_max:.0f} levels)", heatmap(e, err_max)) for lb, e in zip(labels, errs)]
    panels += [
        (f"difference: {lb} vs {labels[0]} (0-{diff_max:.0f})", heatmap(d, diff_max, "viridis"))
        for lb, d in zip(labels[1:], diffs)
    ]
    return {
        "scene": scene_id,
        "at": (y0, x0),
        "crops": [{"caption": c, "src": png_uri(crop(img, y0, x0))} for c, img in panels],
    }


def thumbnails(scene_id: str, labels: list[str], res_dirs: list[Path]) -> dict[str, Any]:
    """A row of small PNGs: every run's output of one scene."""
    return {
        "scene": scene_id,
        "images": [
            {"caption": lb, "src": thumb_uri(read_output(res / f"{scene_id}-out.tif"))}
            for lb, res in zip(labels, res_dirs)
        ],
    }
