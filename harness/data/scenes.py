"""Scenes of a RawFusion-layout folder and the splits over them.

A scene is nine single-channel GRBG Bayer frames ``Scene-XXX-in-N.tif``
(N = 0..8) and, where public, ``Scene-XXX-gt.tif`` (H x W x 3 RGB in [0, 1]),
all flat in one folder. Scenes are found by regular expression and sorted by
scene number, never by directory order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch

from harness.errors import HarnessError

NUM_FRAMES = 9
EXPOSURE_GROUPS: dict[str, tuple[int, ...]] = {"short": (0, 1, 2), "mid": (3, 4, 5), "long": (6, 7, 8)}
SPLITS: dict[str, str] = {
    "train": "scenes 000-279 (FlowCNRDB protocol)",
    "val": "scenes 280-299 (FlowCNRDB protocol)",
    "all": "every scene with ground truth",
    "test": "every scene present, ground truth optional",
}
FILE_RE = re.compile(r"^Scene-(\d{3})-(?:in-(\d+)|(gt))\.tiff?$")


@dataclass(frozen=True)
class Scene:
    """One burst: its number, nine frame paths (None where absent) and the GT path."""

    number: int
    frames: tuple[Path | None, ...]
    gt: Path | None

    @property
    def id(self) -> str:
        return f"Scene-{self.number:03d}"

    @property
    def output_name(self) -> str:
        return f"{self.id}-out.tif"

    @property
    def complete(self) -> bool:
        return all(f is not None for f in self.frames)

    def frame_paths(self) -> list[Path]:
        missing = [i for i, f in enumerate(self.frames) if f is None]
        if missing:
            raise HarnessError(f"{self.id}: frame(s) {', '.join(map(str, missing))} missing")
        return [f for f in self.frames if f is not None]


def discover_scenes(folder: str | Path) -> list[Scene]:
    """Every scene in ``folder`` (frames or GT present), sorted by number."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HarnessError(f"{folder}: no such data folder")
    frames: dict[int, dict[int, Path]] = {}
    gts: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        m = FILE_RE.match(path.name)
        if not m or not path.is_file():
            continue
        number = int(m.group(1))
        if m.group(3):
            gts[number] = path
        else:
            frames.setdefault(number, {})[int(m.group(2))] = path
    numbers = sorted(set(frames) | set(gts))
    return [
        Scene(n, tuple(frames.get(n, {}).get(i) for i in range(NUM_FRAMES)), gts.get(n)) for n in numbers
    ]


def parse_scene_list(text: str) -> list[int]:
    """``"280,283-285"`` -> [280, 283, 284, 285]."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise HarnessError(f"--scenes: cannot read {part!r} (expected numbers and ranges like 280,283-285)")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise HarnessError(f"--scenes: empty range {part!r}")
        out.extend(range(lo, hi + 1))
    return sorted(set(out))


def select_scenes(scenes: list[Scene], split: str = "all", numbers: str | list[int] | None = None) -> list[Scene]:
    """Apply a split (``train``, ``val``, ``all``, ``test``) or an explicit scene list."""
    if numbers:
        wanted = parse_scene_list(numbers) if isinstance(numbers, str) else sorted(set(numbers))
        by_number = {s.number: s for s in scenes}
        absent = [n for n in wanted if n not in by_number]
        if absent:
            raise HarnessError(f"--scenes: scene(s) {', '.join(f'{n:03d}' for n in absent)} not in the data folder")
        return [by_number[n] for n in wanted]
    if split == "train":
        return [s for s in scenes if s.number < 280]
    if split == "val":
        return [s for s in scenes if 280 <= s.number < 300]
    if split == "all":
        return [s for s in scenes if s.gt is not None]
    if split == "test":
        return list(scenes)
    raise HarnessError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")


def _read_tiff(path: Path) -> np.ndarray:
    try:
        return tifffile.imread(path)
    except Exception as exc:  # tifffile raises several types for damaged files
        raise HarnessError(f"{path}: unreadable TIFF ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def frame_shape(scene: Scene) -> tuple[int, ...]:
    """The shape of frame 0, read from the TIFF header only."""
    path = scene.frame_paths()[0]
    try:
        with tifffile.TiffFile(path) as tif:
            return tuple(tif.pages[0].shape)
    except Exception as exc:  # tifffile raises several types for damaged files
        raise HarnessError(f"{path}: unreadable TIFF ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def read_frames(scene: Scene) -> np.ndarray:
    """The nine frames as float32, shape (9, H, W)."""
    arrays = [_read_tiff(p) for p in scene.frame_paths()]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or any(a.ndim != 2 for a in arrays):
        raise HarnessError(f"{scene.id}: frames must be 2-D and of one size, got {sorted(shapes)}")
    return np.stack(arrays).astype(np.float32, copy=False)


def read_gt(scene: Scene) -> np.ndarray:
    """The ground truth as float32, shape (3, H, W), RGB."""
    if scene.gt is None:
        raise HarnessError(f"{scene.id}: no ground truth ({scene.id}-gt.tif)")
    gt = _read_tiff(scene.gt)
    if gt.ndim != 3 or gt.shape[-1] != 3:
        raise HarnessError(f"{scene.gt}: ground truth must be H x W x 3, got {gt.shape}")
    return np.ascontiguousarray(gt.transpose(2, 0, 1)).astype(np.float32, copy=False)


def frames_tensor(scene: Scene) -> torch.Tensor:
    """(1, 9, H, W) float32 tensor of the scene's frames."""
    return torch.from_numpy(read_frames(scene)).unsqueeze(0)
