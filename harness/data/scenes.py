"""Scenes of a RawFusion-layout folder and the splits over them.

A scene is nine single-channel GRBG Bayer frames ``Scene-XXX-in-N.tif``
(N = 0..8) and, where public, ``Scene-XXX-gt.tif`` (H x W x 3 RGB in [0, 1]),
all flat in one folder. Scenes are found by regular expression and sorted by
scene number, never by directory order.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from math import prod
from pathlib import Path

import numpy as np

from harness.challenge import (
    EXPOSURE_GROUPS,
    MAX_DECODE_PIXELS,
    MAX_SCENE,
    NUM_FRAMES,
    TRAIN_SCENES,
    VAL_SCENES,
    scene_id,
)
from harness.errors import HarnessError
from harness.io import read_gt as read_gt_file
from harness.io import read_tiff, sha256_file, tiff_header
from harness.options import Split

__all__ = [
    "EXPOSURE_GROUPS",
    "NUM_FRAMES",
    "Scene",
    "Split",
    "discover_scenes",
    "parse_scene_list",
    "read_frames",
    "read_gt",
    "reference_rgb",
    "select_scenes",
    "frame_shape",
]


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


def _file_of(path: Path, strays: list[Path] | None = None) -> tuple[int, int | None] | None:
    """(scene, frame index or None for the GT) of a RawFusion file name; None for other files; bad Scene-* names refused."""
    if not path.name.startswith("Scene-") or not path.is_file():
        return None
    m = FILE_RE.match(path.name)
    if not m or (m.group(2) is not None and int(m.group(2)) >= NUM_FRAMES):
        if strays is not None:
            strays.append(path)
            return None
        raise HarnessError(
            f"{path}: not a RawFusion name (Scene-XXX-in-0..{NUM_FRAMES - 1}.tif or Scene-XXX-gt.tif, XXX three digits)"
        )
    return int(m.group(1)), None if m.group(3) else int(m.group(2))


def discover_scenes(folder: str | Path, strays: list[Path] | None = None) -> list[Scene]:
    """Every scene in ``folder`` (frames or GT present), sorted by number; the same file twice (.tif, .tiff) is refused.

    A ``Scene-*`` file whose name is not a RawFusion name is refused, or, where ``strays`` is given, put there."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HarnessError(f"{folder}: no such data folder")
    files: dict[tuple[int, int | None], Path] = {}
    for path in sorted(folder.iterdir()):
        key = _file_of(path, strays)
        if key is None:
            continue
        if key in files:
            raise HarnessError(f"{path}: the same file as {files[key].name}; keep one of them")
        files[key] = path
    numbers = sorted({n for n, _ in files})
    return [Scene(n, tuple(files.get((n, i)) for i in range(NUM_FRAMES)), files.get((n, None))) for n in numbers]


def parse_scene_list(text: str, option: str = "--scenes") -> list[int]:
    """``"280,283-285"`` -> [280, 283, 284, 285]; numbers are 000-999, checked before any range is built."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise HarnessError(f"{option}: cannot read {part!r} (expected numbers and ranges like 280,283-285)")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi > MAX_SCENE:
            raise HarnessError(f"{option}: scene numbers have three digits (000-{MAX_SCENE}), got {part!r}")
        if hi < lo:
            raise HarnessError(f"{option}: empty range {part!r}")
        out.update(range(lo, hi + 1))
    return sorted(out)


def number_ranges(numbers: list[int]) -> str:
    """Scene numbers as ranges: [300, 301, 302, 305] -> ``300-302, 305``."""
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(f"{a:03d}" if a == b else f"{a:03d}-{b:03d}" for a, b in runs)


def scene_difference(want: set[int], have: set[int]) -> str:
    """How ``have`` differs from ``want``, every scene counted and named as ranges: ``missing 57 (303-359)``."""
    missing, extra = sorted(want - have), sorted(have - want)
    parts = [f"missing {len(missing)} ({number_ranges(missing)})"] if missing else []
    parts += [f"unexpected {len(extra)} ({number_ranges(extra)})"] if extra else []
    return ", ".join(parts)


def empty_split(folder: Path, scenes: list[Scene], split: Split) -> str:
    """Why ``split`` took nothing from ``folder``, and the split that takes what it holds, in one line."""
    if not scenes:
        return f"{folder}: no scenes in split {split.value!r}: the folder holds no Scene-XXX-in-N.tif files"
    with_gt = [s for s in scenes if s.gt is not None]
    takes = next(
        (s for s in (Split.train, Split.val, Split.all) if s is not split and select_scenes(scenes, s)), Split.test
    )
    taken = len(select_scenes(scenes, takes))
    return (
        f"{folder}: no scenes in split {split.value!r}: the folder holds scenes {number_ranges([s.number for s in scenes])} "
        f"({len(scenes)}, {len(with_gt)} with ground truth); --split {takes.value} takes {taken} of them ({takes.help})"
    )


def select_scenes(
    scenes: list[Scene],
    split: Split | str = Split.all,
    numbers: str | list[int] | None = None,
    option: str = "--scenes",
) -> list[Scene]:
    """Apply a split (``train``, ``val``, ``all``, ``test``) or an explicit scene list (given as ``option``)."""
    if numbers:
        wanted = parse_scene_list(numbers, option) if isinstance(numbers, str) else sorted(set(numbers))
        by_number = {s.number: s for s in scenes}
        absent = [n for n in wanted if n not in by_number]
        if absent:
            raise HarnessError(f"{option}: scene(s) {', '.join(f'{n:03d}' for n in absent)} not in the data folder")
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
    """The shape of frame 0, read from the TIFF header only; larger than any image may be: refused."""
    path = scene.frame_paths()[0]
    shape = tiff_header(path)[0]
    if prod(shape[:2]) > MAX_DECODE_PIXELS:
        raise HarnessError(
            f"{path}: declares {'x'.join(map(str, shape))}, more than the {MAX_DECODE_PIXELS:,} pixels "
            "any image here may have (refused before decoding)"
        )
    return shape


def read_frames(scene: Scene) -> np.ndarray:
    """The nine frames as float32, shape (9, H, W): each checked from its header (2-D, float, frame 0's size)
    before it is decoded, and its values finite (the file named otherwise)."""
    paths = scene.frame_paths()
    shape = frame_shape(scene)
    if len(shape) != 2:
        raise HarnessError(f"{paths[0]}: a frame must be 2-D (one Bayer mosaic), got shape {shape}")
    arrays = []
    for path in paths:
        declared, dtype = tiff_header(path)
        if declared != shape:
            raise HarnessError(
                f"{scene.id}: frames must be 2-D and of one size: {path.name} is {declared}, frame 0 {shape}"
            )
        if dtype.kind != "f":
            raise HarnessError(f"{path}: frames must be float (as stored by the challenge), got {dtype}")
        arr = read_tiff(path)
        if not np.isfinite(arr).all():
            raise HarnessError(
                f"{path}: {int((~np.isfinite(arr)).sum())} non-finite value(s) (NaN or inf) in the frame"
            )
        arrays.append(arr)
    return np.stack(arrays).astype(np.float32, copy=False)


def digests(scene: Scene) -> dict[Path, str]:
    """The sha256 of each of the scene's files: nine frames, then the GT when there is one."""
    return {path: sha256_file(path) for path in [*scene.frame_paths(), *([scene.gt] if scene.gt else [])]}


def fingerprint(scene: Scene, file_digests: dict[Path, str] | None = None) -> str:
    """sha256 over the sha256 of each of the scene's files (from ``file_digests`` when already computed)."""
    h = hashlib.sha256()
    for path, digest in (file_digests or digests(scene)).items():
        h.update(f"{path.name}:{digest}\n".encode())
    return h.hexdigest()


def read_gt(scene: Scene) -> np.ndarray:
    """The ground truth as stored: float32, shape (H, W, 3), RGB, checked against the frames' size."""
    if scene.gt is None:
        raise HarnessError(f"{scene.id}: no ground truth ({scene.id}-gt.tif)")
    hw = frame_shape(scene)[:2] if scene.complete else None
    return read_gt_file(scene.gt, None if hw is None else (hw[0], hw[1]))


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
