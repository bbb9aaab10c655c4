"""``harness train``: the FlowCNRDB training protocol (factsheet, section 3).

Defaults are the published protocol: scenes 000-279 train and 280-299
validate, MSE loss, AdamW (lr 3e-4, weight decay 0.01, betas 0.9/0.999),
cosine decay to 1e-7 over 224k iterations, batch 10, 256 x 256 crops, AMP on
CUDA. ``--stop-after K`` ends the run early at iteration K with everything
saved, and ``--resume`` continues it: model, optimiser, scheduler, scaler and
RNG state are restored and the data order is a function of the sample index,
so a resumed run gives bitwise the weights of a straight one (on the CPU).

Under ``torchrun`` the run is DistributedDataParallel (gloo on CPU, nccl on
GPUs); ``--batch`` is per process, every rank draws its own seeded crops, and
rank 0 alone validates and writes.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from harness.checkpoint import CheckpointError, check_state_dict
from harness.data import discover_scenes, select_scenes
from harness.data.embedded import embedded_dataset
from harness.errors import HarnessError
from harness.inference import model_multiple, resolve_device
from harness.metrics import quantize_output
from harness.registry import create_model, model_config
from harness.scoring import score_pair, write_csv, write_json
from harness.train.dataset import CropDataset, IndexRange, center_crop, npy_cache


@dataclass
class TrainConfig:
    model: str = "flowcnrdb"
    data: str | None = None
    out: str = "runs/train"
    iters: int = 224_000
    stop_after: int | None = None
    batch: int = 10
    crop: int = 256
    lr: float = 3e-4
    min_lr: float = 1e-7
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    amp: bool | None = None  # None: on for CUDA, off on the CPU
    val_every: int = 2000
    val_crop: int = 256
    log_every: int = 100
    resume: bool = False
    device: str = "auto"
    seed: int = 0
    workers: int = 2
    train_scenes: str | None = None
    val_scenes: str | None = None


def cosine_lr(step: int, total: int, lr: float, min_lr: float) -> float:
    """The learning rate after ``step`` of ``total`` steps (cosine from lr to min_lr)."""
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * min(step, total) / total)) / 2


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(obj, tmp)
    tmp.replace(path)


def _dist_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def validate(model: nn.Module, val: list[tuple[np.ndarray, np.ndarray]], crop: int, device: torch.device) -> tuple[float, float]:
    """Mean server-semantics PSNR and SSIM on the fixed centre crops."""
    was_training = model.training
    model.eval()
    psnrs, ssims = [], []
    mult = model_multiple(model)
    with torch.inference_mode():
        for arrays in val:
            frames, gt = center_crop(arrays, crop // mult * mult)
            out = model(frames.unsqueeze(0).to(device))[0].float().cpu()
            row = score_pair(gt.permute(1, 2, 0).numpy(), quantize_output(out.permute(1, 2, 0).numpy()))
            psnrs.append(row["psnr"])
            ssims.append(row["ssim"])
    model.train(was_training)
    return float(np.mean(psnrs)), float(np.mean(ssims))


def train(cfg: TrainConfig, on_step: Callable[[int, int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Run (or resume) training; returns the final log row."""
    rank, world = _dist_info()
    device = resolve_device(cfg.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(cfg, rank, world, device, on_step)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(
    cfg: TrainConfig, rank: int, world: int, device: torch.device, on_step: Callable[[int, int, dict[str, float]], None] | None
) -> dict[str, Any]:
    if cfg.stop_after is not None and not 0 < cfg.stop_after <= cfg.iters:
        raise HarnessError(f"--stop-after must be in 1..{cfg.iters}")
    out = Path(cfg.out)
    state_path = out / "state.pth"
    if cfg.resume and not state_path.is_file():
        raise HarnessError(f"{state_path}: nothing to resume")
    if not cfg.resume and state_path.is_file():
        raise HarnessError(f"{out}: holds a training run; pass --resume or another --out")
    data = Path(cfg.data) if cfg.data else embedded_dataset()
    scenes = discover_scenes(data)
    train_scenes = select_scenes(scenes, "train", cfg.train_scenes)
    val_scenes = select_scenes(scenes, "val", cfg.val_scenes)
    if not train_scenes:
        raise HarnessError(f"{data}: no training scenes (000-279)")
    for scene in train_scenes + val_scenes:
        if scene.gt is None:
            raise HarnessError(f"{scene.id}: ground truth missing in {data}")
    amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    if amp and device.type != "cuda":
        raise HarnessError("--amp needs a CUDA device (the CPU path trains in float32)")
    train_files = npy_cache(train_scenes)
    val_arrays = [(np.load(f, mmap_mode="r"), np.load(g, mmap_mode="r")) for f, g in npy_cache(val_scenes)]

    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model).to(device)
    if cfg.crop % model_multiple(model):
        raise HarnessError(f"--crop must be a multiple of {model_multiple(model)}")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, cfg.iters, cfg.lr, cfg.min_lr) / cfg.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    torch.manual_seed(cfg.seed + 7919 * (rank + 1))  # dropout stream, one per rank
    start, best = 0, -math.inf
    log: list[dict[str, Any]] = []
    if cfg.resume:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        try:
            check_state_dict(model, state["model"], str(state_path))
        except CheckpointError as exc:
            raise HarnessError(str(exc)) from None
        model.load_state_dict(state["model"], strict=True)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
        start, best = int(state["iteration"]), float(state["best"])
        if (out / "train_log.csv").is_file():
            log = [r for r in pd.read_csv(out / "train_log.csv").to_dict("records") if r["iteration"] <= start]
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", {**asdict(cfg), "amp": amp, "world_size": world, "data": str(data), "model_config": model_config(model)})
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    stop = cfg.stop_after or cfg.iters
    dataset = CropDataset(train_files, cfg.crop, cfg.seed, rank)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch,
        sampler=IndexRange(start * cfg.batch, stop * cfg.batch),
        num_workers=cfg.workers,
        generator=torch.Generator().manual_seed(cfg.seed),
        persistent_workers=False,
        pin_memory=device.type == "cuda",
    )
    net.train()
    t0 = time.perf_counter()
    losses: list[float] = []
    row: dict[str, Any] = {}
    for it, (x, y) in enumerate(loader, start + 1):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            pred = net(x)
        loss = F.mse_loss(pred.float(), y)
        if not torch.isfinite(loss):
            raise HarnessError(f"iteration {it}: the loss is not finite")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        losses.append(float(loss.detach()))
        lr = opt.param_groups[0]["lr"]
        validate_now = it % cfg.val_every == 0 or it == cfg.iters
        if rank == 0 and (it % cfg.log_every == 0 or validate_now or it == stop):
            row = {"iteration": it, "loss": float(np.mean(losses)), "lr": lr, "val_psnr": math.nan, "val_ssim": math.nan,
                   "seconds": time.perf_counter() - t0}
            losses = []
            if validate_now and val_arrays:
                row["val_psnr"], row["val_ssim"] = validate(model, val_arrays, cfg.val_crop, device)
                if row["val_psnr"] > best:
                    best = row["val_psnr"]
                    _save_atomic(model.state_dict(), out / "best.pth")
            log.append(row)
            write_csv(out / "train_log.csv", pd.DataFrame(log))
        if on_step and rank == 0:
            on_step(it, stop, {"loss": losses[-1] if losses else float("nan"), "lr": lr})
        if it == stop or it % max(cfg.val_every, 1) == 0:
            _checkpoint(model, opt, sched, scaler, it, best, out, rank, world)
    if rank == 0 and not (out / "best.pth").is_file():
        _save_atomic(model.state_dict(), out / "best.pth")
    return row


def _checkpoint(model: nn.Module, opt: Any, sched: Any, scaler: Any, it: int, best: float, out: Path, rank: int, world: int) -> None:
    rng = torch.get_rng_state()
    states: list[Any] = [rng]
    if world > 1:
        states = [None] * world
        dist.all_gather_object(states, rng)
    if rank != 0:
        return
    _save_atomic(model.state_dict(), out / "last.pth")
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": states,
        "iteration": it,
        "best": best,
    }
    _save_atomic(state, out / "state.pth")

