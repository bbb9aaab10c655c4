"""The Codalab scorer's metrics, on top of scikit-image.

Contract for every function here: images are H x W x 3 ``uint8`` RGB (channel
order R, G, B); the ground truth is quantised by *truncation*,
``uint8(clip(gt * 255, 0, 255))``, exactly as the server did. A dataset score is
the mean of the per-image values (the server averages per-image PSNR; it does
not pool the squared error).

Two SSIM semantics, both named, neither a hidden default:

- :func:`ssim` — the server's: ``structural_similarity(rgb2gray(gt),
  rgb2gray(out))`` with the pre-0.20 scikit-image behaviour for float input,
  data range 2 (the float dtype range -1..1), 7 x 7 uniform window.
- :func:`ssim_standard` — the textbook value, data range 1 on the same
  grayscale images; slightly lower.

>>> import numpy as np
>>> a = np.zeros((8, 8, 3), np.uint8); b = a.copy(); b[0, 0, 0] = 255
>>> round(psnr(a, b), 4)  # MSE = 255**2 / 192
22.8330
"""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2gray
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from harness.challenge import GT_SCALE, SERVER_SSIM_DATA_RANGE, SSIM_WINDOW, STANDARD_SSIM_DATA_RANGE
from harness.options import Quantize


def quantize_gt(gt: np.ndarray) -> np.ndarray:
    """Float ground truth in [0, 1] (H, W, 3) -> uint8 by truncation, as the server did."""
    return np.clip(gt * GT_SCALE, 0, GT_SCALE).astype(np.uint8)


def quantize_output(out: np.ndarray, mode: Quantize | str = Quantize.floor) -> np.ndarray:
    """Float output (H, W, 3) -> uint8 by ``mode`` (see :class:`Quantize`)."""
    scaled = np.clip(np.asarray(out, dtype=np.float64) * GT_SCALE, 0.0, GT_SCALE)
    rounded = np.floor(scaled) if Quantize(mode) is Quantize.floor else np.rint(scaled)
    return rounded.astype(np.uint8)


def _check_pair(gt: np.ndarray, out: np.ndarray) -> None:
    if gt.dtype != np.uint8 or out.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {gt.dtype} and {out.dtype}")
    if gt.shape != out.shape or gt.ndim != 3 or gt.shape[-1] != 3:
        raise ValueError(f"expected two H x W x 3 images of one size, got {gt.shape} and {out.shape}")


def psnr(gt_u8: np.ndarray, out_u8: np.ndarray) -> float:
    """PSNR in dB on the uint8 RGB pair, data range 255 (inf for identical images)."""
    _check_pair(gt_u8, out_u8)
    if np.array_equal(gt_u8, out_u8):
        return float("inf")
    return float(peak_signal_noise_ratio(gt_u8, out_u8))


def _ssim_gray(gt_u8: np.ndarray, out_u8: np.ndarray, data_range: float) -> float:
    _check_pair(gt_u8, out_u8)
    return float(structural_similarity(rgb2gray(gt_u8), rgb2gray(out_u8), data_range=data_range, win_size=SSIM_WINDOW))


def ssim(gt_u8: np.ndarray, out_u8: np.ndarray) -> float:
    """The server's SSIM: grayscale (rgb2gray), 7 x 7 uniform window, data range 2."""
    return _ssim_gray(gt_u8, out_u8, SERVER_SSIM_DATA_RANGE)


def ssim_standard(gt_u8: np.ndarray, out_u8: np.ndarray) -> float:
    """Textbook SSIM on the same grayscale images: data range 1."""
    return _ssim_gray(gt_u8, out_u8, STANDARD_SSIM_DATA_RANGE)
