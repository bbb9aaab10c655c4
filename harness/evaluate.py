"""``harness evaluate``: full-image inference and server-exact scoring of a split.

Outputs in the run folder (layout and documents in :mod:`harness.run`):
``res/Scene-XXX-out.tif`` (8-bit RGB), ``metrics.csv`` (one row per scene),
``summary.json`` (the server's numbers and everything needed to reproduce
them) and ``run.json`` (the settings, so that a resumed run refuses to mix
settings). Every file is written under a temporary name and renamed, so an
interrupted run leaves nothing half-written and the next run finishes the
remaining scenes.
"""

from __future__ import annotations

import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tifffile
import torch
from torch import nn

from harness import __version__ as harness_version
from harness.backends import Runner, Settings, choose_backend, prepare_runner
from harness.data import Scene, discover_scenes, frame_shape, read_frames, read_gt, select_scenes
from harness.data.embedded import embedded_dataset
from harness.data.scenes import digests, empty_split, fingerprint
from harness.errors import HarnessError
from harness.inference import (
    Tiling,
    check_precision,
    describe_gpu,
    peak_memory_mb,
    resolve_device,
    run_model,
    to_hwc,
)
from harness.io import sha256_file, write_tiff
from harness.loading import load_model
from harness.metrics import quantize_output
from harness.options import EvalConfig, Split
from harness.progress import Progress, notify
from harness.registry import list_models, model_config, model_entry, model_multiple
from harness.run import RunFolder, RunSettings, RunSummary, table_fields
from harness.scoring import score_pair
from harness.sources import Args, ModelSource, parse_model_args


@dataclass
class Prepared:
    model: nn.Module
    source: ModelSource
    weights: str | None
    weights_sha256: str | None
    data: Path
    scenes: list[Scene]
    folder: RunFolder


def _model_args(cfg: EvalConfig, data: Path | None) -> Args:
    args = parse_model_args(cfg.model_args) if isinstance(cfg.model_args, str) else (cfg.model_args or {})
    if cfg.model in list_models() and isinstance(args, dict):
        return {**model_entry(cfg.model).args_from_data(data), **args}
    return args


def build_model(cfg: EvalConfig, data: Path | None) -> tuple[nn.Module, ModelSource, str | None, str | None]:
    """The model with its weights, by :func:`harness.loading.load_model`'s policy."""
    loaded = load_model(cfg.model, _model_args(cfg, data), cfg.trust_code, cfg.weights, cfg.random_init)
    return loaded.model, loaded.source, loaded.weights, loaded.weights_sha256


def _check_scenes(cfg: EvalConfig, data: Path, scenes: list[Scene], multiple: int) -> None:
    scored = cfg.split is not Split.test  # test: ground truth optional, with or without --scenes
    for scene in scenes:
        scene.frame_paths()
        if scored and scene.gt is None:
            raise HarnessError(
                f"{scene.id}: ground truth {scene.id}-gt.tif missing in {data} (split {cfg.split.value!r} is scored)"
            )
    for scene in scenes:
        shape = frame_shape(scene)
        if len(shape) != 2 or shape[0] % multiple or shape[1] % multiple:
            raise HarnessError(f"{scene.id}: frame size {shape} is not 2-D with H and W multiples of {multiple}")


def prepare(cfg: EvalConfig, progress: Progress | None = None) -> Prepared:
    """Everything that can fail on bad input, checked before any inference."""
    data = cfg.data or embedded_dataset(progress)
    scenes = select_scenes(discover_scenes(data), cfg.split, cfg.scenes)
    if not scenes:
        raise HarnessError(empty_split(data, discover_scenes(data), cfg.split))
    model, source, weights, sha = build_model(cfg, data)
    multiple = model_multiple(model)
    Tiling(cfg.tile, cfg.overlap).check(multiple)
    _check_scenes(cfg, data, scenes, multiple)
    return Prepared(model.eval(), source, weights, sha, data, scenes, RunFolder(cfg.run_dir))


def _settings(cfg: EvalConfig, prep: Prepared, backend: str) -> RunSettings:
    return RunSettings(
        model=cfg.model,
        source=prep.source.as_dict(),
        model_config=model_config(prep.model),
        weights=prep.weights,
        weights_sha256=prep.weights_sha256,
        data=str(prep.data.resolve()),
        quantize=cfg.quantize.value,
        precision=cfg.precision.value,
        tile=cfg.tile,
        overlap=cfg.overlap,
        backend=backend,
    )


def _input_size(cfg: EvalConfig, prep: Prepared) -> tuple[int, int]:
    """(H, W) of what the model is given: a tile, or the first scene's frames."""
    h, w = frame_shape(prep.scenes[0])
    return (min(cfg.tile, h), min(cfg.tile, w)) if cfg.tile else (h, w)


def _open_run(folder: RunFolder, settings: RunSettings, force: bool) -> dict[str, dict[str, Any]]:
    """Refuse a folder holding another run, or clear it with ``force``; return the recorded rows, by scene."""
    folder.sweep()
    if force:
        folder.clear()
    else:
        previous = folder.read_settings()
        if previous is None and folder.holds_outputs():
            raise HarnessError(
                f"{folder.root}: holds outputs but no run.json (not a harness run); pass --force to clear it, or another --out"
            )
        if previous is not None and previous != settings:
            raise HarnessError(
                f"{folder.root}: holds a run with other settings ({', '.join(settings.changed(previous))}); pass --force or another --out"
            )
    sealed = folder.read_summary().metrics_sha256 if folder.summary_json.is_file() else None
    folder.summary_json.unlink(missing_ok=True)  # incomplete until this run ends
    folder.res.mkdir(parents=True, exist_ok=True)
    folder.write_settings(settings)
    if not folder.metrics_csv.is_file() or (sealed is not None and sealed != sha256_file(folder.metrics_csv)):
        return {}  # no rows, or rows changed since the run sealed them: every scene is computed again
    return {str(r["scene"]): r for r in folder.read_metrics().to_dict("records")}


def _reusable(folder: RunFolder, row: dict[str, Any], scene: Scene | None, fingerprint_now: str | None) -> bool:
    """A recorded row is reused only when its inputs are the scene's files as they are now and its output is intact."""
    out = folder.res / f"{row['scene']}-out.tif"
    if scene is None or fingerprint_now != row.get("inputs_sha256"):
        raise HarnessError(
            f"{row['scene']}: the data changed since this run was made (inputs differ or are gone); "
            f"pass --force to start {folder.root} again, or another --out"
        )
    return out.is_file() and sha256_file(out) == row.get("output_sha256")


def versions(device: torch.device | None = None) -> dict[str, str]:
    """The software a run used, and on a CUDA ``device`` the GPU and CUDA version."""
    import skimage

    gpu = describe_gpu(device)
    return {
        "harness": harness_version,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-image": skimage.__version__,  # type: ignore[attr-defined]  # a lazily loaded attribute
        "tifffile": tifffile.__version__,
        **({"gpu": gpu["name"], "cuda": str(gpu["cuda"])} if gpu else {}),
    }


def _run_scene(cfg: EvalConfig, prep: Prepared, scene: Scene, runner: Runner) -> dict[str, Any]:
    """Infer, write the output, score it: the scene's metrics row."""
    files = digests(scene)  # each file hashed once: the fingerprint and the GT's digest come from these
    frames = torch.from_numpy(read_frames(scene)).unsqueeze(0)
    tiling = Tiling(cfg.tile, cfg.overlap)
    t0 = time.perf_counter()
    try:
        output = run_model(runner, frames, model_multiple(prep.model), tiling)
    except HarnessError as exc:
        raise type(exc)(f"{scene.id}: {exc}") from None
    seconds = time.perf_counter() - t0
    out_u8 = quantize_output(to_hwc(output), cfg.quantize)
    row: dict[str, Any] = {"scene": scene.id}
    if scene.gt is not None:
        row.update(score_pair(read_gt(scene), out_u8, scene.id))
        row["gt_sha256"] = files[scene.gt]
    row.update(seconds=seconds, height=out_u8.shape[0], width=out_u8.shape[1], inputs_sha256=fingerprint(scene, files))
    row["output_sha256"] = sha256_file(write_tiff(prep.folder.res / scene.output_name, out_u8, "rgb"))
    return row


def _kept_rows(prep: Prepared, recorded: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The recorded rows that still hold (same inputs, intact output); outputs without a row are removed."""
    scenes = {s.id: s for s in discover_scenes(prep.data)}
    kept = {
        sid: row
        for sid, row in recorded.items()
        if _reusable(prep.folder, row, scenes.get(sid), fingerprint(scenes[sid]) if sid in scenes else None)
    }
    for out in prep.folder.res.iterdir():
        if out.name.removesuffix("-out.tif") not in kept:
            out.unlink()  # written by an interrupted run before its row: computed again below
    return kept


def evaluate(cfg: EvalConfig, progress: Progress | None = None) -> RunSummary:
    """Run, finish or extend an evaluation; returns the summary written to summary.json.

    A run folder holds one model, one set of settings and one data folder: rows already there are reused only when
    their inputs are unchanged and their outputs intact; scenes not asked for this time are kept (the run extends).
    """
    device = resolve_device(cfg.device)
    check_precision(cfg.precision, device)
    prep = prepare(cfg, progress)
    prep.model.to(device)
    backend = choose_backend(cfg.backend, prep.model, Settings(device, cfg.precision, cfg.threads or 1)).name
    created = not prep.folder.root.exists()
    try:
        return _evaluate(cfg, prep, device, backend, progress)
    except BaseException:
        if created and not prep.folder.metrics_csv.exists():  # failed before its first scene: nothing half-written
            shutil.rmtree(prep.folder.root, ignore_errors=True)
        raise


def _evaluate(
    cfg: EvalConfig, prep: Prepared, device: torch.device, backend: str, progress: Progress | None
) -> RunSummary:
    rows = _kept_rows(prep, _open_run(prep.folder, _settings(cfg, prep, backend), cfg.force))
    reused = len(rows)
    t_start = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    runner: Runner | None = None
    for k, scene in enumerate(prep.scenes):
        if scene.id not in rows:
            if runner is None:
                runner = prepare_runner(prep.model, backend, device, cfg.precision, _input_size(cfg, prep), cfg.threads)
            rows[scene.id] = _run_scene(cfg, prep, scene, runner)
            prep.folder.write_metrics(pd.DataFrame([rows[sid] for sid in sorted(rows)]))
        psnr = rows[scene.id].get("psnr")
        notify(
            progress,
            k + 1,
            len(prep.scenes),
            f"{scene.id} {psnr:.2f} dB" if psnr is not None and psnr == psnr else scene.id,
        )
    table = pd.DataFrame([rows[sid] for sid in sorted(rows)])
    prep.folder.write_metrics(table)
    runtime = (
        runner.describe()
        if runner is not None
        else {"backend": backend, "note": "every scene reused from the run folder"}
    )
    summary = _summary(cfg, prep, table, device, time.perf_counter() - t_start, runtime)
    summary.timings["reused_scenes"] = reused
    prep.folder.write_summary(summary)
    return summary


def _summary(
    cfg: EvalConfig, prep: Prepared, table: pd.DataFrame, device: torch.device, wall: float, runtime: dict[str, Any]
) -> RunSummary:
    return RunSummary(
        **table_fields(table),
        data=str(prep.data.resolve()),
        model=cfg.model,
        source=prep.source.as_dict(),
        model_config=model_config(prep.model),
        parameters=int(sum(p.numel() for p in prep.model.parameters())),
        weights=prep.weights,
        weights_sha256=prep.weights_sha256,
        split=cfg.split.value,
        quantize=cfg.quantize.value,
        device=str(device),
        precision=cfg.precision.value,
        backend=str(runtime["backend"]),
        runtime=runtime,
        tiling={"tile": cfg.tile, "overlap": cfg.overlap},
        versions=versions(device),
        timings={"wall_seconds": wall, "mean_seconds_per_scene": float(table["seconds"].mean())},
        peak_memory_mb=peak_memory_mb(device),
        command=" ".join(sys.argv),
    )
