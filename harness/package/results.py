"""Codalab results zips: validated before writing, verified the way the server reads them."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.challenge import IMAGE_SIZE, scene_id
from harness.data import discover_scenes, parse_scene_list
from harness.data.scenes import Scene, frame_shape, reference_rgb, scene_difference
from harness.errors import HarnessError
from harness.io import output_header, read_gt, read_output, tiff_header
from harness.package.zips import safe_extract, write_zip
from harness.run import RunFolder, mean_scores
from harness.scoring import BGR_HINT, OUT_RE, score_folder, server_outputs, swapped_outputs

SWAP_MARGIN = 0.05  # correlation points by which the swapped order must fit better
SWAP_MIN_FIT = 0.6  # and it must fit well: outputs barely related to the reference (an untrained model) prove nothing
SWAP_MIN_CHROMA = 0.5  # and red minus blue must run against the reference's: colour, not brightness, decides


def _reference(scene: Scene) -> np.ndarray | None:
    """Ground truth when at hand, else frame 0 demosaicked (colour is what matters here)."""
    return read_gt(scene.gt) if scene.gt is not None else reference_rgb(scene)


def _channel_fit(out: np.ndarray, ref: np.ndarray) -> float:
    """Mean correlation of the red and blue channels with the reference's."""
    o = out.astype(np.float64)
    r = ref.astype(np.float64)
    return float(np.mean([np.corrcoef(o[..., c].ravel(), r[..., c].ravel())[0, 1] for c in (0, 2)]))


def _chroma_fit(out: np.ndarray, ref: np.ndarray) -> float:
    """Correlation of red minus blue with the reference's: near 1 in the right order, near -1 swapped, brightness cancelled.

    Without colour in either (a constant difference) there is no evidence: NaN, which no threshold passes.
    """
    o = out[..., 0].astype(np.float64) - out[..., 2]
    r = ref[..., 0].astype(np.float64) - ref[..., 2]
    if o.std() == 0 or r.std() == 0:
        return float("nan")
    return float(np.corrcoef(o.ravel(), r.ravel())[0, 1])


def check_channel_order(name: str, out: np.ndarray, ref: np.ndarray) -> None:
    """Refuse an output whose red and blue are swapped against the reference.

    The swapped order must fit the reference's red and blue channels better
    and well, and the output's red minus blue must run against the
    reference's. Channels fit largely through brightness, so an output that
    follows brightness but not colour (an untrained model's) can fit the
    swapped order better by chance: with one seed in 60, a random toy
    model's outputs did on two of three scenes, by 0.06 and 0.14 points,
    while their red minus blue correlated at -0.18 and -0.25 with the
    reference's; demosaicked frames written BGR give -0.64 to -0.84.
    """
    as_written = _channel_fit(out, ref)
    swapped = _channel_fit(out[..., ::-1], ref)
    chroma = _chroma_fit(out, ref)
    if swapped > as_written + SWAP_MARGIN and swapped > SWAP_MIN_FIT and chroma < -SWAP_MIN_CHROMA:
        raise HarnessError(
            f"{name}: red and blue look swapped (R/B correlation with the reference {as_written:.3f} as written, "
            f"{swapped:.3f} swapped; red minus blue against the reference's {chroma:.3f}); {BGR_HINT}"
        )


@dataclass
class RunInfo:
    res: Path
    scenes: list[str]
    data: Path | None


def run_info(run_dir: Path, expect_scenes: str | None) -> RunInfo:
    folder = RunFolder(run_dir)
    if not folder.res.is_dir():
        raise HarnessError(f"{run_dir}: no res/ folder (is it a `harness evaluate` run folder?)")
    summary = folder.read_summary() if folder.summary_json.is_file() else None
    if expect_scenes:
        scenes = [scene_id(n) for n in parse_scene_list(expect_scenes, "--expect-scenes")]
    elif summary is None:
        raise HarnessError(
            f"{run_dir}: incomplete run (no summary.json): finish it with `harness evaluate`, or pass --expect-scenes"
        )
    else:
        scenes = list(summary.scenes)
    data = Path(summary.data) if summary is not None else None
    return RunInfo(folder.res, scenes, data if data is not None and data.is_dir() else None)


def validate_results(run_dir: Path, expect_scenes: str | None = None) -> dict[str, Path]:
    """Every check the server (or a human) would fail a submission for; returns name -> file."""
    info = run_info(run_dir, expect_scenes)
    files: dict[str, Path] = {}
    for path in sorted(info.res.iterdir()):
        if not OUT_RE.match(path.name):
            raise HarnessError(
                f"{run_dir}: res/{path.name} is not a Scene-XXX-out.tif name (the server pairs outputs by name)"
            )
        files[path.name] = path
    want = {int(s.split("-")[1]) for s in info.scenes}
    have = {int(name.split("-")[1]) for name in files}
    if want != have:
        raise HarnessError(
            f"{run_dir}: the outputs in res/ differ from the run's scenes: {scene_difference(want, have)}"
        )
    scenes = {s.id: s for s in discover_scenes(info.data)} if info.data else {}
    for name, path in files.items():
        img = read_output(path)
        scene = scenes.get(name.replace("-out.tif", ""))
        expected = _expected_shape(scene)
        if img.shape[:2] != expected:
            raise HarnessError(f"{name}: size {img.shape[0]}x{img.shape[1]}, expected {expected[0]}x{expected[1]}")
        ref = _reference(scene) if scene else None
        if ref is not None:
            check_channel_order(name, img, ref)
    return files


def _expected_shape(scene: Scene | None) -> tuple[int, int]:
    if scene is None or not scene.complete:
        return IMAGE_SIZE
    h, w = frame_shape(scene)[:2]
    return h, w


def package_results(run_dir: Path, out: Path, expect_scenes: str | None = None) -> Path:
    """Zip exactly the outputs of a complete, consistent run, after every check the server would fail them for."""
    RunFolder(run_dir).check_not_input(out)
    files = validate_results(run_dir, expect_scenes)
    RunFolder(run_dir).verified()
    return write_zip(dict(files), out)


def _check_sizes(outputs: dict[int, Path], gt: Path | None) -> list[list[int]]:
    """Every output: one size for all, no larger than the challenge's (or, with ground truth, equal to it). Without
    ground truth each is decoded here; with it, the headers suffice, since scoring decodes them (once)."""
    shapes: dict[Path, tuple[int, ...]] = {}
    for number, path in outputs.items():
        if gt is None:
            shapes[path] = read_output(path).shape
            continue
        gt_file = gt / f"{scene_id(number)}-gt.tif"
        hw = tiff_header(gt_file)[0][:2] if gt_file.is_file() else None
        shapes[path] = output_header(path, None if hw is None else (hw[0], hw[1]))
    distinct = sorted({tuple(v) for v in shapes.values()})
    if len(distinct) > 1:
        first = {d: next(p for p, s in shapes.items() if tuple(s) == d) for d in distinct}
        raise HarnessError(
            "outputs of different sizes: " + ", ".join(f"{first[d]} is {'x'.join(map(str, d))}" for d in distinct)
        )
    return [list(d) for d in distinct]


def verify_zip(zip_path: Path, gt: Path | None = None, expect_scenes: str | None = None) -> dict[str, Any]:
    """Read a results zip as the scoring program did (safely); score it when ground truth is given.
    Errors name the zip and the member (``ZIP:member``), not the temporary folder it was read from."""
    with tempfile.TemporaryDirectory(prefix="harness-verify-") as tmp:
        try:
            return _verify_extracted(zip_path, Path(tmp), gt, expect_scenes)
        except HarnessError as exc:
            raise HarnessError(str(exc).replace(f"{tmp}/", f"{zip_path}:").replace(tmp, str(zip_path))) from None


def _verify_extracted(zip_path: Path, tmp: Path, gt: Path | None, expect_scenes: str | None) -> dict[str, Any]:
    check = safe_extract(zip_path, Path(tmp))
    top = check.top
    folder = check.server_folder(Path(tmp))
    if len(top) > 1 and not any(folder.glob("*.tif")):
        raise HarnessError(
            f"{zip_path}: the server sees {len(top)} entries at the top ({', '.join(top[:4])}), so it descends into "
            "none and finds no *.tif outputs there; zip the outputs alone"
            + (f" (zip -d {zip_path.name} '__MACOSX/*' removes macOS's copy)" if "__MACOSX" in top else "")
        )
    outputs = server_outputs(folder)
    if expect_scenes:
        want = set(parse_scene_list(expect_scenes, "--expect-scenes"))
        if set(outputs) != want:
            raise HarnessError(
                f"{zip_path}: scenes differ from --expect-scenes: {scene_difference(want, set(outputs))}"
            )
    report: dict[str, Any] = {
        "zip": str(zip_path),
        "members": len(check.members),
        "notes": check.notes,
        "folder_read": str(folder.relative_to(tmp)) if folder != Path(tmp) else ".",
        "outputs": [p.name for p in outputs.values()],
        "shapes": _check_sizes(outputs, gt),
    }
    if gt is not None:
        table: pd.DataFrame = score_folder(folder, gt)
        report["notes"] = [*report["notes"], *swapped_outputs(table)]
        report.update(mean_scores(table))
        report["per_scene"] = table.to_dict("records")
    return report
