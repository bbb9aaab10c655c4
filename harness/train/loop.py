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

import dataclasses
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from harness.checkpoint import CheckpointError, check_state_dict
from harness.data import discover_scenes, frame_shape, select_scenes
from harness.data.embedded import embedded_dataset
from harness.errors import HarnessError, HarnessWarning, first_line
from harness.foreign import their_code
from harness.inference import resolve_device
from harness.io import atomic_write, read_csv, read_json, write_csv, write_json
from harness.metrics import quantize_output
from harness.options import PUBLISHED_CROP, TrainConfig
from harness.progress import Progress, notify
from harness.registry import model_config, model_multiple
from harness.scoring import score_pair
from harness.sources import ModelSource, parse_model_args, resolve_model
from harness.train.dataset import CropDataset, center_crop, npy_cache


def cosine_lr(step: int, total: int, lr: float, min_lr: float) -> float:
    """The learning rate after ``step`` of ``total`` steps (cosine from lr to min_lr)."""
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * min(step, total) / total)) / 2


def _save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _dist_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def validate(
    model: nn.Module, val: list[tuple[np.ndarray, np.ndarray]], crop: int, device: torch.device
) -> tuple[float, float]:
    """Mean server-semantics PSNR and SSIM on the fixed centre crops."""
    was_training = model.training
    model.eval()
    psnrs, ssims = [], []
    mult = model_multiple(model)
    with torch.inference_mode():
        for arrays in val:
            frames, gt = center_crop(arrays, crop // mult * mult)
            with their_code("forward pass"):
                out = model(frames.unsqueeze(0).to(device))[0].float().cpu()
            row = score_pair(gt.permute(1, 2, 0).numpy(), quantize_output(out.permute(1, 2, 0).numpy()))
            psnrs.append(row["psnr"])
            ssims.append(row["ssim"])
    model.train(was_training)
    return float(np.mean(psnrs)), float(np.mean(ssims))


def train(cfg: TrainConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run (or resume) training; returns the final log row."""
    rank, world = _dist_info()
    device = resolve_device(cfg.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        session = Session.begin(cfg, rank, world, device)
        return _train(session.cfg, session, progress)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class Session:
    """Everything a training run holds: data, model, optimiser state, log."""

    cfg: TrainConfig
    rank: int
    world: int
    device: torch.device
    amp: bool
    data: Path
    train_files: list[tuple[Path, Path]]
    val_arrays: list[tuple[np.ndarray, np.ndarray]]
    model: nn.Module
    source: ModelSource
    opt: torch.optim.Optimizer
    sched: Any
    scaler: torch.amp.GradScaler
    start: int = 0
    best: float = -math.inf
    log: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def begin(cls, cfg: TrainConfig, rank: int, world: int, device: torch.device) -> Session:
        _check_run_folder(cfg)
        amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
        if amp and device.type != "cuda":
            raise HarnessError("--amp needs a CUDA device (the CPU path trains in float32)")
        torch.manual_seed(cfg.seed)
        model, source = resolve_model(cfg.model, parse_model_args(cfg.model_args), cfg.trust_code)
        multiple = math.lcm(model_multiple(model), 2)  # even: a crop keeps the Bayer phase
        if cfg.crop is not None and cfg.crop % multiple:
            raise HarnessError(f"--crop {cfg.crop}: {cfg.model} takes crops that are multiples of {multiple}")
        cfg, data, train_files, val_arrays = _load_data(cfg, multiple)
        cfg = _fit_memory(model, cfg, device, amp)
        _check_resume(cfg)
        model.to(device)
        opt = torch.optim.AdamW(
            model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, cfg.iters, cfg.lr, cfg.min_lr) / cfg.lr)
        scaler = torch.amp.GradScaler(device.type, enabled=amp)
        torch.manual_seed(cfg.seed + 7919 * (rank + 1))  # dropout stream, one per rank
        session = cls(cfg, rank, world, device, amp, data, train_files, val_arrays, model, source, opt, sched, scaler)
        if cfg.resume:
            session.restore()
        return session

    def restore(self) -> None:
        path = self.cfg.out / "state.pth"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            check_state_dict(self.model, state["model"], str(path))
        except CheckpointError as exc:
            raise HarnessError(str(exc)) from None
        except Exception as exc:  # truncated, corrupt or foreign files raise several types
            raise HarnessError(
                f"{path}: not a resumable training state ({type(exc).__name__}: {first_line(exc)})"
            ) from None
        self.model.load_state_dict(state["model"], strict=True)
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"][self.rank] if self.rank < len(state["rng"]) else state["rng"][0])
        self.start, self.best = int(state["iteration"]), float(state["best"])
        if (self.cfg.out / "train_log.csv").is_file():
            self.log = [
                r for r in read_csv(self.cfg.out / "train_log.csv").to_dict("records") if r["iteration"] <= self.start
            ]


SCHEDULE = (
    "model",
    "model_args",
    "iters",
    "batch",
    "crop",
    "lr",
    "min_lr",
    "weight_decay",
    "beta1",
    "beta2",
    "seed",
    "train_scenes",
    "val_scenes",
)
"""Settings a resumed run must keep: changing any of them would silently change what the run computes."""


def _fit_memory(model: nn.Module, cfg: TrainConfig, device: torch.device, amp: bool) -> TrainConfig:
    """``cfg`` with a micro-batch that fits the free memory: --micro-batch as given, else all of --batch at once
    when it fits, else the most crops that fit (the same step: gradients accumulate). A configuration whose
    estimate exceeds the free memory is refused, or with --no-memory-check only warned about."""
    from harness.train.memory import available_memory, training_memory

    crop = cfg.crop or PUBLISHED_CROP
    try:
        need = lambda n: training_memory(model, n, crop, half=amp)
        batch_need = need(cfg.micro_batch or cfg.batch)
    except (RuntimeError, NotImplementedError, ValueError, TypeError) as exc:  # a model the meta device cannot run
        warnings.warn(
            HarnessWarning(f"no memory estimate for {cfg.model} ({type(exc).__name__}: {first_line(exc)})"),
            stacklevel=2,
        )
        return cfg
    have = available_memory(device)
    if batch_need <= have:
        return cfg
    fits = [n for n in range(1, (cfg.micro_batch or cfg.batch)) if need(n) <= have][-1:] if cfg.memory_check else []
    if cfg.micro_batch is None and fits:
        warnings.warn(
            HarnessWarning(
                f"--micro-batch {fits[0]}: {cfg.batch} crops of {crop}x{crop} at once need about "
                f"{batch_need / 2**30:.1f} GiB, {fits[0]} fit the {have / 2**30:.1f} GiB free on {device} "
                "(the same step: gradients accumulate over --batch)"
            ),
            stacklevel=2,
        )
        return dataclasses.replace(cfg, micro_batch=fits[0])
    fitting = f"--micro-batch {fits[0]}" if fits else "a smaller --crop"
    message = (
        f"this configuration needs about {batch_need / 2**30:.1f} GiB to train ({cfg.micro_batch or cfg.batch} "
        f"crops of {crop}x{crop} at once{', float16 autocast' if amp else ''}), more than the "
        f"{have / 2**30:.1f} GiB free on {device}: use {fitting}, or --no-memory-check to try anyway"
    )
    if cfg.memory_check:
        raise HarnessError(message)
    warnings.warn(HarnessWarning(message.split(": use ")[0]), stacklevel=2)
    return cfg


def _check_run_folder(cfg: TrainConfig) -> None:
    if (
        cfg.iters < 1
        or cfg.batch < 1
        or (cfg.crop is not None and cfg.crop < 2)
        or cfg.val_every < 1
        or cfg.log_every < 1
        or cfg.workers < 0
    ):
        raise HarnessError(
            "--iters, --batch, --val-every and --log-every must be at least 1, --crop at least 2, --workers at least 0"
        )
    if cfg.micro_batch is not None and not 1 <= cfg.micro_batch <= cfg.batch:
        raise HarnessError(f"--micro-batch must be in 1..{cfg.batch} (--batch)")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise HarnessError(f"--lr must be a positive finite number, got {cfg.lr}")
    if cfg.stop_after is not None and not 0 < cfg.stop_after <= cfg.iters:
        raise HarnessError(f"--stop-after must be in 1..{cfg.iters}")
    state_path = cfg.out / "state.pth"
    if cfg.resume and not state_path.is_file():
        raise HarnessError(f"{state_path}: nothing to resume")
    if not cfg.resume and state_path.is_file():
        raise HarnessError(f"{cfg.out}: holds a training run; pass --resume or another --out")


def _check_resume(cfg: TrainConfig) -> None:
    """A resumed run keeps its schedule (compared once the defaults are resolved)."""
    if cfg.resume:
        previous = read_json(cfg.out / "config.json") if (cfg.out / "config.json").is_file() else {}
        now = json.loads(json.dumps(asdict(cfg), default=str))
        changed = [k for k in SCHEDULE if k in previous and previous[k] != now[k]]
        if changed:
            was = ", ".join(f"--{k.replace('_', '-')} {previous[k]} (now {now[k]})" for k in changed)
            raise HarnessError(
                f"{cfg.out}: --resume continues the run as it started: {was}; start a new run to change them"
            )


def _load_data(
    cfg: TrainConfig, multiple: int
) -> tuple[TrainConfig, Path, list[tuple[Path, Path]], list[tuple[np.ndarray, np.ndarray]]]:
    """The training files and validation arrays, and ``cfg`` with its crop chosen (see :class:`TrainConfig`)."""
    data = cfg.data or embedded_dataset()
    scenes = discover_scenes(data)
    train_scenes = select_scenes(scenes, "train", cfg.train_scenes, "--train-scenes")
    val_scenes = select_scenes(scenes, "val", cfg.val_scenes, "--val-scenes")
    if not train_scenes:
        raise HarnessError(f"{data}: no training scenes")
    both = sorted({s.id for s in train_scenes} & {s.id for s in val_scenes})
    if both:
        warnings.warn(
            HarnessWarning(f"scene(s) {', '.join(both)} both train and validate: the validation PSNR is not held out"),
            stacklevel=2,
        )
    shapes = {scene.id: frame_shape(scene)[:2] for scene in train_scenes}
    largest = (min(min(shape) for shape in shapes.values()) - 2) // multiple * multiple
    if cfg.crop is None:  # the published crop where the scenes take it, else the largest they take
        if largest < multiple:
            raise HarnessError(
                f"{data}: the training scenes are too small to train on (crops need {multiple + 2} pixels)"
            )
        if largest < PUBLISHED_CROP:
            warnings.warn(
                HarnessWarning(
                    f"--crop {largest}: the largest crop these scenes take (the published crop is {PUBLISHED_CROP})"
                ),
                stacklevel=2,
            )
        cfg = dataclasses.replace(cfg, crop=min(PUBLISHED_CROP, largest))
    crop = cfg.crop
    assert crop is not None
    for scene_id, (h, w) in shapes.items():
        if min(h, w) < crop + 2:
            hint = (
                f"these scenes take --crop {largest} at most"
                if largest >= multiple
                else "they are too small to train on"
            )
            raise HarnessError(
                f"{scene_id}: {h}x{w} is too small for --crop {crop} (crops need {crop + 2} pixels); {hint}"
            )
    for scene in train_scenes + val_scenes:
        if scene.gt is None:
            raise HarnessError(f"{scene.id}: ground truth missing in {data}")
    val_arrays = [(np.load(f, mmap_mode="r"), np.load(g, mmap_mode="r")) for f, g in npy_cache(val_scenes)]
    return cfg, data, npy_cache(train_scenes), val_arrays


def _loader(s: Session, stop: int) -> torch.utils.data.DataLoader:
    cfg = s.cfg
    return torch.utils.data.DataLoader(
        CropDataset(s.train_files, cfg.crop or PUBLISHED_CROP, cfg.seed, s.rank),
        batch_size=cfg.batch,
        sampler=range(s.start * cfg.batch, stop * cfg.batch),  # resuming is starting later
        num_workers=cfg.workers,
        generator=torch.Generator().manual_seed(cfg.seed),
        persistent_workers=False,
        pin_memory=s.device.type == "cuda",
    )


def _step(s: Session, net: nn.Module, x: torch.Tensor, y: torch.Tensor, it: int) -> float:
    """One optimiser step over the batch, in micro-batches whose gradients add up to the full batch's."""
    x, y = x.to(s.device, non_blocking=True), y.to(s.device, non_blocking=True)
    s.opt.zero_grad(set_to_none=True)
    total = 0.0
    size = s.cfg.micro_batch or len(x)
    for xc, yc in zip(x.split(size), y.split(size)):
        with torch.autocast(s.device.type, dtype=torch.float16, enabled=s.amp), their_code("forward pass"):
            pred = net(xc)
        loss = F.mse_loss(pred.float(), yc) * (len(xc) / len(x))  # the batch mean, as a sum of weighted chunk means
        if not torch.isfinite(loss):
            raise HarnessError(f"iteration {it}: the loss is not finite")
        with their_code("backward pass"):
            s.scaler.scale(loss).backward()
        total += float(loss.detach())
    s.scaler.step(s.opt)
    s.scaler.update()
    s.sched.step()
    return total


def _log_row(s: Session, it: int, losses: list[float], validate_now: bool, seconds: float) -> dict[str, Any]:
    row = {
        "iteration": it,
        "loss": float(np.mean(losses)),
        "lr": s.opt.param_groups[0]["lr"],
        "val_psnr": math.nan,
        "val_ssim": math.nan,
        "seconds": seconds,
    }
    if validate_now and s.val_arrays:
        row["val_psnr"], row["val_ssim"] = validate(s.model, s.val_arrays, s.cfg.val_crop, s.device)
        if row["val_psnr"] > s.best:
            s.best = row["val_psnr"]
            _save(s.model.state_dict(), s.cfg.out / "best.pth")
    s.log.append(row)
    write_csv(s.cfg.out / "train_log.csv", pd.DataFrame(s.log))
    return row


def _train(cfg: TrainConfig, s: Session, progress: Progress | None) -> dict[str, Any]:
    if s.rank == 0 and not cfg.resume:  # a resumed run keeps the settings it started with
        cfg.out.mkdir(parents=True, exist_ok=True)
        write_json(
            cfg.out / "config.json",
            {
                **asdict(cfg),
                "amp": s.amp,
                "world_size": s.world,
                "data": str(s.data),
                "source": s.source.as_dict(),
                "model_config": model_config(s.model),
            },
        )
    net: nn.Module = s.model
    if s.world > 1:
        net = nn.parallel.DistributedDataParallel(
            s.model, device_ids=[s.device.index] if s.device.type == "cuda" else None
        )
    stop = cfg.stop_after or cfg.iters
    net.train()
    t0 = time.perf_counter() - (s.log[-1]["seconds"] if s.log else 0.0)  # a resumed run's clock goes on
    losses: list[float] = []
    row: dict[str, Any] = {}
    for it, (x, y) in enumerate(_loader(s, stop), s.start + 1):
        loss = _step(s, net, x, y, it)
        losses.append(loss)
        validate_now = it % cfg.val_every == 0 or it == cfg.iters
        if s.rank == 0 and (it % cfg.log_every == 0 or validate_now or it == stop):
            row = _log_row(s, it, losses, validate_now, time.perf_counter() - t0)
            losses = []
        if s.rank == 0:
            notify(progress, it, stop, f"loss {loss:.3g} lr {s.opt.param_groups[0]['lr']:.3g}")
        if it == stop or it % max(cfg.val_every, 1) == 0:
            _checkpoint(s, it)
    if s.rank == 0 and not (cfg.out / "best.pth").is_file():
        _save(s.model.state_dict(), cfg.out / "best.pth")
    return row


def _checkpoint(s: Session, it: int) -> None:
    rng = torch.get_rng_state()
    states: list[Any] = [rng]
    if s.world > 1:
        states = [None] * s.world
        dist.all_gather_object(states, rng)
    if s.rank != 0:
        return
    _save(s.model.state_dict(), s.cfg.out / "last.pth")
    state = {
        "model": s.model.state_dict(),
        "optimizer": s.opt.state_dict(),
        "scheduler": s.sched.state_dict(),
        "scaler": s.scaler.state_dict(),
        "rng": states,
        "iteration": it,
        "best": s.best,
    }
    _save(state, s.cfg.out / "state.pth")
