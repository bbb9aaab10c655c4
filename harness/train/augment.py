"""Bayer-preserving augmentation and exposure-group shuffling.

Following Liu et al. (CVPRW 2019, "Learning raw image denoising with Bayer
pattern unification and Bayer preserving augmentation"): a flip or a 90 degree
rotation of a GRBG mosaic yields another Bayer phase, so the patch is cut two
pixels larger, transformed (frames and ground truth together) and then cropped
at the offset (0 or 1 in each direction) where the mosaic reads GRBG again.
The offset is found by transforming a map of the colour each site holds, so
it is right for every one of the eight transforms by construction.
"""

from __future__ import annotations

import numpy as np

from harness.data.scenes import EXPOSURE_GROUPS

# Colour code of the sites of a GRBG mosaic: 0 = R, 1 = G, 2 = B.
GRBG = np.array([[1, 0], [2, 1]], dtype=np.int8)


def colour_map(h: int, w: int) -> np.ndarray:
    """(h, w) colour code of a GRBG mosaic whose origin is at an even position."""
    return np.tile(GRBG, (h // 2 + 1, w // 2 + 1))[:h, :w]


def dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of the last two axes: k in 0..7 (k & 4 flips first)."""
    if k & 4:
        a = a[..., ::-1]
    return np.rot90(a, k & 3, axes=(-2, -1))


def phase_offset(codes: np.ndarray) -> tuple[int, int]:
    """The (dy, dx) in {0, 1}^2 at which a transformed colour map reads G R / B G."""
    for dy in (0, 1):
        for dx in (0, 1):
            if (codes[dy : dy + 2, dx : dx + 2] == GRBG).all():
                return dy, dx
    raise AssertionError("no GRBG phase found")  # impossible for a Bayer mosaic


def bayer_crop(frames: np.ndarray, gt: np.ndarray, y: int, x: int, size: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``size`` x ``size`` at the even position (y, x), transformed by ``k``, mosaic kept GRBG.

    ``frames`` (T, H, W) and ``gt`` (3, H, W) may be memory-mapped; only the
    (size + 2)^2 patch is read. (y, x) must be even and leave room for size + 2.
    """
    if y % 2 or x % 2:
        raise ValueError("crop origins must be even to keep the Bayer phase")
    s = size + 2
    fp = dihedral(np.asarray(frames[:, y : y + s, x : x + s]), k)
    gp = dihedral(np.asarray(gt[:, y : y + s, x : x + s]), k)
    dy, dx = phase_offset(dihedral(colour_map(s, s), k))
    return (
        np.ascontiguousarray(fp[:, dy : dy + size, dx : dx + size]),
        np.ascontiguousarray(gp[:, dy : dy + size, dx : dx + size]),
    )


def shuffle_order(rng: np.random.Generator) -> np.ndarray:
    """A frame order that keeps frame 0 first and permutes within 1-2, 3-5 and 6-8."""
    order = [0]
    for group in EXPOSURE_GROUPS.values():
        members = [i for i in group if i != 0]
        order.extend(rng.permutation(members).tolist())
    return np.array(order)
