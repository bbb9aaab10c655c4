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

from enum import Enum

import numpy as np

from harness.challenge import EXPOSURE_GROUPS, NUM_FRAMES, TRAIN_SCENES, VAL_SCENES, scene_id
from harness.errors import HarnessError
from harness.io import read_gt as read_gt_file
from harness.io import read_tiff, tiff_header

__all__ = ["EXPOSURE_GROUPS", "NUM_FRAMES", "Scene", "Split", "discover_scenes", "parse_scene_list", "read_frames",
           "read_gt", "reference_rgb", "select_scenes", "frame_shape"]


class Split(str, Enum):
    """Which scenes of a folder a command takes."""

    train = "train"
    val = "val"
    all = "all"
    test = "test"

    @property
    def help(self) -> str:
        return {
            "train": f"scenes {TRAIN_SCENES.start:03d}-{TRAIN_SCENES.stop - 1:03d} (FlowCNRDB protocol)",
            "val": f"scenes {VAL_SCENES.start:03d}-{VAL_SCENES.stop - 1:03d}, held out (FlowCNRDB protocol)",
            "all": "every scene with ground truth",
            "test": "every scene present, ground truth optional",
        }[self.value]

FILE_RE = re.compile(r"^Scene-(\d{3})-(?:in-(\d+)|(gt))\.tiff?$")


@dataclass(frozen=True)
class Scene:
    """One burst: its number, nine frame paths (None where absent) and the GT path."""

    number: int
    frames: tuple[Path | None, ...]
    gt: Path | None

    @property
    def id(self) -> str:
        return scene_id(self.number)

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


def select_scenes(scenes: list[Scene], split: Split | str = Split.all, numbers: str | list[int] | None = None) -> list[Scene]:
    """Apply a split (``train``, ``val``, ``all``, ``test``) or an explicit scene list."""
    if numbers:
        wanted = parse_scene_list(numbers) if isinstance(numbers, str) else sorted(set(numbers))
        by_number = {s.number: s for s in scenes}
        absent = [n for n in wanted if n not in by_number]
        if absent:
            raise HarnessError(f"--scenes: scene(s) {', '.join(f'{n:03d}' for n in absent)} not in the data folder")
        return [by_number[n] for n in wanted]
    try:
        split = Split(split)
    except ValueError:
        raise HarnessError(f"unknown split {split!r}; known: {', '.join(s.value for s in Split)}") from None
    if split is Split.train:
        return [s for s in scenes if s.number in TRAIN_SCENES]
    if split is Split.val:
        return [s for s in scenes if s.number in VAL_SCENES]
    if split is Split.all:
        return [s for s in scenes if s.gt is not None]
    return list(scenes)


def frame_shape(scene: Scene) -> tuple[int, ...]:
    """The shape of frame 0, read from the TIFF header only."""
    return tiff_header(scene.frame_paths()[0])[0]


def read_frames(scene: Scene) -> np.ndarray:
    """The nine frames as float32, shape (9, H, W)."""
    arrays = [read_tiff(p) for p in scene.frame_paths()]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or any(a.ndim != 2 for a in arrays):
        raise HarnessError(f"{scene.id}: frames must be 2-D and of one size, got {sorted(shapes)}")
    return np.stack(arrays).astype(np.float32, copy=False)


def read_gt(scene: Scene) -> np.ndarray:
    """The ground truth as stored: float32, shape (H, W, 3), RGB."""
    if scene.gt is None:
        raise HarnessError(f"{scene.id}: no ground truth ({scene.id}-gt.tif)")
    return read_gt_file(scene.gt)


def reference_rgb(scene: Scene) -> np.ndarray | None:
    """Frame 0 (the reference) demosaiced bilinearly: (H, W, 3) float32 RGB on the frame's own scale.

    A colour reference where no ground truth is at hand, and the report's preview.
    """
    if scene.frames[0] is None:
        return None
    import torch

    from harness.models.demosaic import bilinear_demosaic

    frame = torch.from_numpy(read_tiff(scene.frames[0]).astype(np.float32))[None, None]
    return bilinear_demosaic(frame)[0].permute(1, 2, 0).contiguous().numpy()
