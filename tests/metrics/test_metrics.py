"""Metrics against hand-computed cases, scikit-image directly, and the torch cross-check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

from harness.metrics import psnr, psnr_torch, quantize_gt, quantize_output, ssim, ssim_standard, ssim_torch


def test_gt_is_truncated_not_rounded():
    gt = np.array([[[0.999, 0.5, 1.2]]], np.float32)
    assert quantize_gt(gt).tolist() == [[[254, 127, 255]]]
    assert quantize_output(gt, "floor").tolist() == [[[254, 127, 255]]]
    assert quantize_output(gt, "round").tolist() == [[[255, 128, 255]]]


def test_gt_quantisation_multiplies_in_the_stored_float32():
    # 0.0117647061124444 * 255 is 2.9999999 in float64 but 3.0 in float32: the server used float32.
    v = np.float32(3 / 255)
    assert quantize_gt(np.full((1, 1, 3), v, np.float32))[0, 0, 0] == int(np.float32(v) * np.float32(255))


def test_psnr_hand_computed():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 10  # MSE = 100 / 48
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (100 / 48)), abs=1e-12)
    assert psnr(a, a) == math.inf


def test_ssim_hand_computed_constant_images():
    # Constant images: variances 0, so SSIM = (2 mx my + C1) / (mx^2 + my^2 + C1) with C1 = (0.01 L)^2.
    a = np.full((16, 16, 3), 100, np.uint8)
    b = np.full((16, 16, 3), 120, np.uint8)
    mx, my = 100 / 255, 120 / 255
    for fn, data_range in ((ssim, 2.0), (ssim_standard, 1.0)):
        c1 = (0.01 * data_range) ** 2
        assert fn(a, b) == pytest.approx((2 * mx * my + c1) / (mx**2 + my**2 + c1), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_against_scikit_image_directly(seed):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    out = np.clip(gt.astype(int) + rng.integers(-30, 31, gt.shape), 0, 255).astype(np.uint8)
    mse = np.mean((gt.astype(np.float64) - out.astype(np.float64)) ** 2)
    assert psnr(gt, out) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-10)  # from the definition
    assert ssim(gt, out) == structural_similarity(rgb2gray(gt), rgb2gray(out), data_range=2)
    assert ssim_standard(gt, out) == structural_similarity(rgb2gray(gt), rgb2gray(out), data_range=1)
    assert ssim_standard(gt, out) < ssim(gt, out)


@pytest.mark.parametrize("seed", range(10))
def test_torch_cross_check_on_random_images(seed):
    rng = np.random.default_rng(100 + seed)
    h, w = rng.integers(7, 90, 2)
    gt = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = (
        rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if seed % 2
        else np.clip(gt + rng.integers(0, 5, gt.shape), 0, 255).astype(np.uint8)
    )
    assert abs(psnr(gt, out) - psnr_torch(gt, out)) <= 1e-6
    assert abs(ssim(gt, out) - ssim_torch(gt, out, 2.0)) <= 1e-6
    assert abs(ssim_standard(gt, out) - ssim_torch(gt, out, 1.0)) <= 1e-6


def test_refuses_non_uint8():
    with pytest.raises(ValueError):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)))
