"""An independent torch implementation of the server's PSNR and SSIM.

Written from the definitions, not from scikit-image, in float64; every
evaluation cross-checks it against :mod:`harness.metrics.functional`.
Inputs are H x W x 3 uint8 RGB arrays or tensors.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from harness.challenge import SERVER_SSIM_DATA_RANGE, SSIM_WINDOW

# ITU-R BT.709 luma weights, as scikit-image's rgb2gray uses.
GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)


def _as_float(img: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(img))
    if t.dtype != torch.uint8:
        raise ValueError(f"expected uint8, got {t.dtype}")
    return t.to(torch.float64)


def psnr_torch(gt_u8: np.ndarray | torch.Tensor, out_u8: np.ndarray | torch.Tensor) -> float:
    """10 log10(255^2 / MSE) over all pixels and channels."""
    mse = float(torch.mean((_as_float(gt_u8) - _as_float(out_u8)) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def gray(img_u8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 RGB (H, W, 3) -> float64 luma in [0, 1]."""
    w = torch.tensor(GRAY_WEIGHTS, dtype=torch.float64)
    return (_as_float(img_u8) / 255.0) @ w


def ssim_torch(
    gt_u8: np.ndarray | torch.Tensor,
    out_u8: np.ndarray | torch.Tensor,
    data_range: float = SERVER_SSIM_DATA_RANGE,
    win: int = SSIM_WINDOW,
) -> float:
    """Mean SSIM of the grayscale images: uniform win x win window, sample covariances,
    K1 = 0.01, K2 = 0.03, averaged over the positions whose window lies inside the image."""
    x = gray(gt_u8)[None, None]
    y = gray(out_u8)[None, None]
    n = win * win
    mean = lambda t: F.avg_pool2d(t, win, stride=1)
    ux, uy = mean(x), mean(y)
    cov = n / (n - 1)
    vx = cov * (mean(x * x) - ux * ux)
    vy = cov * (mean(y * y) - uy * uy)
    vxy = cov * (mean(x * y) - ux * uy)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean())
