"""``harness data check``: every scene of a folder, checked file by file."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.challenge import (
    EXPOSURE_GROUPS,
    FIRST_HIDDEN_SCENE,
    NUM_FRAMES,
    SIZE_MULTIPLE,
    TRAIN_SCENES,
    VAL_SCENES,
    split_of,
)
from harness.data.scenes import Scene, discover_scenes, empty_split, select_scenes
from harness.errors import HarnessError
from harness.io import UnreadableTiff, read_tiff
from harness.options import Split
from harness.progress import Progress, notify


@dataclass
class Problem:
    scene: str
    file: str
    what: str

    def __str__(self) -> str:
        return f"{self.scene}: {self.file}: {self.what}"


@dataclass
class CheckReport:
    folder: Path
    split: Split | None  # None: every scene present
    scenes: list[Scene]
    problems: list[Problem] = field(default_factory=list)
    sizes: Counter[tuple[int, int]] = field(default_factory=Counter)
    dtypes: Counter[str] = field(default_factory=Counter)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    with_gt: int = 0

    def as_dict(self) -> dict[str, object]:
        """The report as JSON-ready values (``harness data check --json``)."""
        return {
            "folder": str(self.folder),
            "split": self.split.value if self.split else None,
            "ok": self.ok,
            "scenes": [s.id for s in self.scenes],
            "split_counts": self.split_counts(),
            "with_gt": self.with_gt,
            "sizes": {f"{h}x{w}": n for (h, w), n in sorted(self.sizes.items())},
            "dtypes": dict(self.dtypes),
            "ranges": {k: list(v) for k, v in self.ranges.items()},
            "problems": [{"scene": p.scene, "file": p.file, "what": p.what} for p in self.problems],
        }

    @property
    def label(self) -> str:
        """Which scenes were checked, as the table's title says it."""
        return f"split {self.split.value}" if self.split else "every scene"

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.scenes)

    def split_counts(self) -> dict[str, int]:
        counts = Counter(split_of(s.number) for s in self.scenes)
        return {
            f"train ({TRAIN_SCENES.start:03d}-{TRAIN_SCENES.stop - 1:03d})": counts["train"],
            f"val ({VAL_SCENES.start:03d}-{VAL_SCENES.stop - 1:03d})": counts["val"],
            f"other ({FIRST_HIDDEN_SCENE}+)": counts["other"],
        }

    def _widen(self, key: str, arr: np.ndarray) -> None:
        lo, hi = float(np.min(arr)), float(np.max(arr))
        old = self.ranges.get(key)
        self.ranges[key] = (min(lo, old[0]), max(hi, old[1])) if old else (lo, hi)


def _read(path: Path, scene: Scene, report: CheckReport) -> np.ndarray | None:
    try:
        return read_tiff(path)
    except UnreadableTiff as exc:
        report.problems.append(Problem(scene.id, path.name, exc.reason))
    except HarnessError as exc:  # refused from its header (declared size)
        report.problems.append(Problem(scene.id, path.name, str(exc).removeprefix(f"{path}: ")))
    return None


def _check_scene(scene: Scene, report: CheckReport) -> None:
    shape: tuple[int, ...] | None = None
    group_of = {i: g for g, idx in EXPOSURE_GROUPS.items() for i in idx}
    for i in range(NUM_FRAMES):
        path = scene.frames[i]
        name = f"{scene.id}-in-{i}.tif"
        if path is None:
            report.problems.append(Problem(scene.id, name, "frame missing"))
            continue
        arr = _read(path, scene, report)
        if arr is None:
            continue
        report.dtypes[str(arr.dtype)] += 1
        if arr.ndim != 2:
            report.problems.append(
                Problem(scene.id, name, f"expected a 2-D single-channel frame, got shape {arr.shape}")
            )
            continue
        if not np.issubdtype(arr.dtype, np.floating):
            report.problems.append(Problem(scene.id, name, f"expected float data, got {arr.dtype}"))
        if shape is None:
            shape = arr.shape
        elif arr.shape != shape:
            report.problems.append(
                Problem(
                    scene.id, name, f"size {arr.shape[0]}x{arr.shape[1]} differs from frame 0's {shape[0]}x{shape[1]}"
                )
            )
            continue
        if not np.all(np.isfinite(arr)):
            report.problems.append(
                Problem(scene.id, name, f"{int(np.sum(~np.isfinite(arr)))} non-finite value(s) (NaN or inf)")
            )
            continue
        report._widen(group_of[i], arr)
    if shape is not None:
        h, w = shape[:2]
        report.sizes[(h, w)] += 1
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            report.problems.append(
                Problem(scene.id, f"{scene.id}-in-0.tif", f"size {h}x{w} is not a multiple of {SIZE_MULTIPLE}")
            )
    if scene.gt is not None:
        _check_gt(scene, scene.gt, shape, report)


def _check_gt(scene: Scene, path: Path, shape: tuple[int, ...] | None, report: CheckReport) -> None:
    report.with_gt += 1
    gt = _read(path, scene, report)
    if gt is None:
        return
    name = path.name
    if gt.ndim != 3 or gt.shape[-1] != 3:
        report.problems.append(Problem(scene.id, name, f"ground truth must be H x W x 3, got shape {gt.shape}"))
        return
    if shape is not None and gt.shape[:2] != shape:
        report.problems.append(
            Problem(scene.id, name, f"size {gt.shape[0]}x{gt.shape[1]} differs from the frames' {shape[0]}x{shape[1]}")
        )
    if not np.all(np.isfinite(gt)):
        report.problems.append(Problem(scene.id, name, "non-finite value(s) in the ground truth"))
        return
    lo, hi = float(gt.min()), float(gt.max())
    if lo < 0.0 or hi > 1.0:
        report.problems.append(Problem(scene.id, name, f"values outside [0, 1] (min {lo:.4g}, max {hi:.4g})"))
    report._widen("gt", gt)


def check_folder(
    folder: str | Path,
    split: Split | None = None,
    scenes: str | None = None,
    progress: Progress | None = None,
) -> CheckReport:
    """Check every scene of ``folder`` in ``split`` (default: every scene present; ``--scenes`` overrides it).

    Files named ``Scene-*`` that are not RawFusion names are problems listed with the others."""
    strays: list[Path] = []
    found = discover_scenes(folder, strays)
    chosen = Split(split) if split is not None else None
    selected = select_scenes(found, chosen or Split.test, scenes)
    report = CheckReport(Path(folder), chosen, selected)
    for path in strays:
        report.problems.append(
            Problem("-", path.name, f"not a RawFusion name (Scene-XXX-in-0..{NUM_FRAMES - 1}.tif or Scene-XXX-gt.tif)")
        )
    if not selected:
        why = empty_split(Path(folder), found, chosen or Split.test).split(": ", 1)[1]
        report.problems.append(Problem("-", str(folder), why))
    for k, scene in enumerate(selected):
        _check_scene(scene, report)
        notify(progress, k + 1, len(selected), scene.id)
    return report
