"""Training crops read from memory-mapped arrays, deterministic per seed, rank and sample.

The TIFFs are converted once into ``.npy`` files (frames (9, H, W) and GT
(3, H, W), float32) in a cache folder; every crop then reads only its patch
through ``numpy.load(mmap_mode='r')``, so the dataset is never held in memory.

Sample ``i`` of rank ``r`` is drawn from ``default_rng([seed, r, i])``: scene,
even crop origin, one of the eight Bayer-preserving transforms and the
within-group frame order. The data order is therefore a pure function of the
sample index, which makes resuming exact and worker processes irrelevant to
the result.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from harness.data import Scene, read_frames, read_gt
from harness.data.embedded import cache_root
from harness.io import atomic_write
from harness.train.augment import bayer_crop, shuffle_order


def _cache_key(scene: Scene) -> str:
    h = hashlib.sha256()
    for path in [*scene.frame_paths(), scene.gt]:
        assert path is not None
        st = path.stat()
        h.update(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.save would append .npy to a name
            np.save(fh, array)

    atomic_write(path, write)


def npy_cache(scenes: list[Scene]) -> list[tuple[Path, Path]]:
    """(frames.npy, gt.npy) per scene, converted once (atomically) into the cache; the GT as (3, H, W)."""
    root = cache_root() / "npy"
    out = []
    for scene in scenes:
        folder = root / f"{scene.id}-{_cache_key(scene)}"
        fpath, gpath = folder / "frames.npy", folder / "gt.npy"
        if not (fpath.is_file() and gpath.is_file()):
            _save_npy(fpath, read_frames(scene))
            _save_npy(gpath, np.ascontiguousarray(read_gt(scene).transpose(2, 0, 1)))
        out.append((fpath, gpath))
    return out


class CropDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Item ``i`` is the i-th training sample of this rank: (frames (9, C, C), gt (3, C, C))."""

    def __init__(
        self, files: list[tuple[Path, Path]], crop: int, seed: int, rank: int = 0, length: int = 2**62
    ) -> None:
        if crop % 2:
            raise ValueError("the crop size must be even")
        self.files = files
        self.crop = crop
        self.seed = seed
        self.rank = rank
        self.length = length
        self._arrays: list[tuple[np.ndarray, np.ndarray]] | None = None

    def arrays(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self._arrays is None:  # opened lazily, once per worker process
            self._arrays = [(np.load(f, mmap_mode="r"), np.load(g, mmap_mode="r")) for f, g in self.files]
        return self._arrays

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.rank, index])
        frames, gt = self.arrays()[int(rng.integers(len(self.files)))]
        _, h, w = frames.shape
        s = self.crop + 2
        if h < s or w < s:
            raise ValueError(f"scene of {h}x{w} is too small for {self.crop} crops")
        y = 2 * int(rng.integers((h - s) // 2 + 1))
        x = 2 * int(rng.integers((w - s) // 2 + 1))
        fc, gc = bayer_crop(frames, gt, y, x, self.crop, int(rng.integers(8)))
        fc = fc[shuffle_order(rng)]
        return torch.from_numpy(np.ascontiguousarray(fc)), torch.from_numpy(gc)


def center_crop(scene_arrays: tuple[np.ndarray, np.ndarray], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed validation crop: centred, even origin, at most ``size`` square."""
    frames, gt = scene_arrays
    _, h, w = frames.shape
    ch, cw = min(size, h), min(size, w)
    y, x = (h - ch) // 2 // 2 * 2, (w - cw) // 2 // 2 * 2
    return (
        torch.from_numpy(np.ascontiguousarray(frames[:, y : y + ch, x : x + cw])),
        torch.from_numpy(np.ascontiguousarray(gt[:, y : y + ch, x : x + cw])),
    )
