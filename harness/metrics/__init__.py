"""Image metrics with the challenge server's semantics, as pure functions."""

from harness.metrics.functional import SERVER_SSIM_DATA_RANGE, psnr, quantize_gt, quantize_output, ssim, ssim_standard
from harness.metrics.torch_ref import psnr_torch, ssim_torch

__all__ = [
    "SERVER_SSIM_DATA_RANGE",
    "psnr",
    "psnr_torch",
    "quantize_gt",
    "quantize_output",
    "ssim",
    "ssim_standard",
    "ssim_torch",
]
