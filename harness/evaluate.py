"""``harness evaluate``: full-image inference and server-exact scoring of a split.

Outputs in the run folder: ``res/Scene-XXX-out.tif`` (8-bit RGB), ``metrics.csv``
(one row per scene), ``summary.json`` (the server's numbers and everything
needed to reproduce them) and ``run.json`` (the settings, so that a resumed
run refuses to mix settings). Every file is written under a temporary name and
renamed, so an interrupted run leaves nothing half-written and the next run
finishes the remaining scenes.
"""

from __future__ import annotations

import json
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import tifffile
import torch
from torch import nn

import harness
from harness.checkpoint import load_checkpoint, sha256_file
from harness.data import Scene, discover_scenes, read_frames, read_gt, select_scenes
from harness.data.scenes import frame_shape
from harness.data.embedded import embedded_dataset
from harness.data.synth import frame0_exposure
from harness.errors import HarnessError
from harness.inference import Tiling, model_multiple, resolve_device, run_model, to_hwc
from harness.metrics import quantize_output
from harness.registry import model_config, model_entry
from harness.scoring import mean_scores, score_pair, write_csv, write_json


@dataclass
class EvalConfig:
    model: str
    weights: str | None = None
    data: str | None = None
    split: str = "val"
    scenes: str | None = None
    out: str | None = None
    device: str = "auto"
    amp: bool = False
    tile: int = 0
    overlap: int = 0
    quantize: str = "floor"
    force: bool = False
    random_init: bool = False
    model_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prepared:
    model: nn.Module
    weights: str | None
    weights_sha256: str | None
    data: Path
    scenes: list[Scene]
    out: Path


def build_model(cfg: EvalConfig, data: Path | None) -> tuple[nn.Module, str | None, str | None]:
    """The model with its weights: explicit file, bundled weights, or (explicitly) random."""
    entry = model_entry(cfg.model)
    args = dict(cfg.model_args)
    if cfg.model == "demosaic" and "exposure" not in args and data is not None:
        args["exposure"] = frame0_exposure(data)
    model = harness.create_model(cfg.model, **args)
    has_params = any(True for _ in model.parameters())
    if cfg.weights:
        load_checkpoint(model, cfg.weights)
        return model, str(cfg.weights), sha256_file(cfg.weights)
    if not has_params:
        return model, None, None
    if entry.weights is not None and entry.weights.path.is_file():
        load_checkpoint(model, entry.weights.path)
        return model, f"bundled:{entry.weights.file}", sha256_file(entry.weights.path)
    if cfg.random_init:
        return model, "random-init", None
    hint = " (e.g. --weights Ckpt_01_FlowCNRDB.pth, the published checkpoint)" if entry.family == "flowcnrdb" else ""
    raise HarnessError(f"model {cfg.model!r} has no bundled weights: pass --weights PATH{hint}, or --random-init for a smoke test")


def prepare(cfg: EvalConfig, progress: Callable[[int, int], None] | None = None) -> Prepared:
    """Everything that can fail on bad input, checked before any inference."""
    if cfg.quantize not in ("floor", "round"):
        raise HarnessError(f"--quantize must be floor or round, not {cfg.quantize!r}")
    data = Path(cfg.data) if cfg.data else embedded_dataset(progress)
    scenes = select_scenes(discover_scenes(data), cfg.split, cfg.scenes)
    if not scenes:
        raise HarnessError(f"{data}: no scenes in split {cfg.split!r}")
    scored = cfg.split != "test" or bool(cfg.scenes)
    for scene in scenes:
        scene.frame_paths()
        if scored and scene.gt is None:
            raise HarnessError(f"{scene.id}: ground truth {scene.id}-gt.tif missing in {data} (split {cfg.split!r} is scored)")
    model, weights, sha = build_model(cfg, data)
    mult = model_multiple(model)
    Tiling(cfg.tile, cfg.overlap).check(mult)
    for scene in scenes:
        shape = frame_shape(scene)
        if len(shape) != 2 or shape[0] % mult or shape[1] % mult:
            raise HarnessError(f"{scene.id}: frame size {shape} is not 2-D with H and W multiples of {mult}")
    out = Path(cfg.out) if cfg.out else Path("runs") / f"{cfg.model}-{cfg.split}"
    return Prepared(model.eval(), weights, sha, data, scenes, out)


def _settings(cfg: EvalConfig, prep: Prepared) -> dict[str, Any]:
    return {
        "model": cfg.model,
        "model_args": cfg.model_args,
        "weights_sha256": prep.weights_sha256,
        "weights": prep.weights,
        "data": str(prep.data.resolve()),
        "quantize": cfg.quantize,
        "amp": cfg.amp,
        "tile": cfg.tile,
        "overlap": cfg.overlap,
    }


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def versions() -> dict[str, str]:
    import skimage

    return {
        "harness": harness.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-image": skimage.__version__,
        "tifffile": tifffile.__version__,
    }


def write_output(path: Path, out_u8: np.ndarray) -> None:
    """Atomic 8-bit RGB TIFF (tifffile stores the channels in the order given: RGB)."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tifffile.imwrite(tmp, out_u8, photometric="rgb")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def evaluate(
    cfg: EvalConfig,
    on_scene: Callable[[str, dict[str, Any], int, int], None] | None = None,
    on_synth: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run (or finish) an evaluation; returns the summary written to summary.json."""
    prep = prepare(cfg, on_synth)
    device = resolve_device(cfg.device)
    model = prep.model.to(device)
    out, res = prep.out, prep.out / "res"
    settings = _settings(cfg, prep)
    run_json = out / "run.json"
    if run_json.is_file() and not cfg.force:
        previous = json.loads(run_json.read_text())
        if previous != json.loads(json.dumps(settings)):
            changed = sorted(k for k in settings if previous.get(k) != json.loads(json.dumps(settings)).get(k))
            raise HarnessError(f"{out}: holds a run with other settings ({', '.join(changed)}); pass --force or another --out")
    res.mkdir(parents=True, exist_ok=True)
    write_json(run_json, settings)
    metrics_csv = out / "metrics.csv"
    done: dict[str, dict[str, Any]] = {}
    if metrics_csv.is_file() and not cfg.force:
        for row in pd.read_csv(metrics_csv).to_dict("records"):
            if (res / f"{row['scene']}-out.tif").is_file():
                done[str(row["scene"])] = row
    tiling = Tiling(cfg.tile, cfg.overlap)
    tiling_diff: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for k, scene in enumerate(prep.scenes):
        if scene.id in done:
            rows.append(done[scene.id])
            if on_scene:
                on_scene(scene.id, done[scene.id], k + 1, len(prep.scenes))
            continue
        frames = torch.from_numpy(read_frames(scene)).unsqueeze(0)
        t0 = time.perf_counter()
        output = run_model(model, frames, device, cfg.amp, tiling)
        seconds = time.perf_counter() - t0
        if not torch.isfinite(output).all():
            raise HarnessError(f"{scene.id}: the model produced non-finite values")
        if tiling.tile and tiling_diff is None:
            full = run_model(model, frames, device, cfg.amp)
            tiling_diff = {"scene": scene.id, "max_abs_diff": float((full - output).abs().max()), "mean_abs_diff": float((full - output).abs().mean())}
        out_u8 = quantize_output(to_hwc(output), cfg.quantize)
        row: dict[str, Any] = {"scene": scene.id}
        if scene.gt is not None:
            gt = read_gt(scene).transpose(1, 2, 0)
            row.update(score_pair(gt, out_u8, scene.id))
        row["seconds"] = seconds
        row["height"], row["width"] = out_u8.shape[:2]
        write_output(res / scene.output_name, out_u8)
        rows.append(row)
        write_csv(metrics_csv, pd.DataFrame(rows))
        if on_scene:
            on_scene(scene.id, row, k + 1, len(prep.scenes))
    table = pd.DataFrame(rows)
    write_csv(metrics_csv, table)
    scored = table.dropna(subset=["psnr"]) if "psnr" in table else table.iloc[0:0]
    summary: dict[str, Any] = {
        **(mean_scores(scored) if len(scored) else {"psnr": None, "ssim": None, "ssim_standard": None}),
        "num_scenes": int(len(table)),
        "num_scored": int(len(scored)),
        "model": cfg.model,
        "model_config": model_config(model),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "weights": prep.weights,
        "weights_sha256": prep.weights_sha256,
        "data": str(prep.data),
        "split": cfg.split,
        "scenes": [s.id for s in prep.scenes],
        "quantize": cfg.quantize,
        "device": str(device),
        "amp": cfg.amp,
        "tiling": {"tile": cfg.tile, "overlap": cfg.overlap, "difference_to_full_image": tiling_diff},
        "versions": versions(),
        "timings": {
            "wall_seconds": time.perf_counter() - t_start,
            "mean_seconds_per_scene": float(table["seconds"].mean()),
        },
        "peak_memory_mb": _peak_memory_mb(device),
        "command": " ".join(sys.argv),
    }
    write_json(out / "summary.json", summary)
    return summary

