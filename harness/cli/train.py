"""``harness train``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from harness.cli.common import MODEL_HELP, DataOpt, DeviceOpt, ModelArgsOpt, TrustCodeOpt, console, default_of, given
from harness.options import Split, TrainConfig


def _opt(name: str, help: str, **limits: Any) -> typer.models.OptionInfo:
    """An option whose default, shown in --help, is TrainConfig's; ``limits`` (min, max) are checked by the parser."""
    return typer.Option(help=help, show_default=default_of(TrainConfig, name), **limits)


def _positive_finite(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a positive finite number, got {value}")
    return value


def train_cmd(
    model: Annotated[
        str | None, typer.Option("--model", "-m", help=MODEL_HELP, show_default=default_of(TrainConfig, "model"))
    ] = None,
    model_args: ModelArgsOpt = None,
    trust_code: TrustCodeOpt = None,
    data: DataOpt = None,
    out: Annotated[Path | None, _opt("out", "Run folder (checkpoints, train_log.csv, config.json).")] = None,
    iters: Annotated[int | None, _opt("iters", "Iterations of the cosine schedule (published: 224000).", min=1)] = None,
    stop_after: Annotated[
        int | None, typer.Option(help="Stop at this iteration, resumable with --resume.", min=1)
    ] = None,
    batch: Annotated[int | None, _opt("batch", "Crops per step (per process under torchrun).", min=1)] = None,
    micro_batch: Annotated[
        int | None,
        typer.Option(
            help="Crops per forward/backward pass; gradients accumulate to --batch (less memory, same step).",
            min=1,
            show_default="--batch, or the most that fit the free memory",
        ),
    ] = None,
    crop: Annotated[
        int | None,
        typer.Option(
            help="Crop size (Bayer phase kept).", min=2, show_default="256 (published), or the largest the scenes take"
        ),
    ] = None,
    memory_check: Annotated[
        bool | None,
        typer.Option(
            "--memory-check/--no-memory-check",
            help="Refuse a configuration whose memory estimate exceeds the free memory.",
            show_default="on",
        ),
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            help="AdamW learning rate, decayed by cosine to 1e-7.",
            show_default=default_of(TrainConfig, "lr"),
            callback=_positive_finite,
        ),
    ] = None,
    amp: Annotated[bool | None, typer.Option("--amp/--no-amp", help="Mixed precision.", show_default="on CUDA")] = None,
    val_every: Annotated[int | None, _opt("val_every", "Validate and checkpoint every K iterations.", min=1)] = None,
    val_crop: Annotated[int | None, _opt("val_crop", "Fixed centre crop of the validation scenes.", min=2)] = None,
    log_every: Annotated[int | None, _opt("log_every", "Write a train_log.csv row every K iterations.", min=1)] = None,
    resume: Annotated[
        bool | None, typer.Option("--resume", help="Continue the run in --out exactly where it stopped.")
    ] = None,
    device: DeviceOpt = None,
    seed: Annotated[int | None, _opt("seed", "Seed of the model init, crops and dropout.", min=0)] = None,
    workers: Annotated[int | None, _opt("workers", "Data-loading worker processes.", min=0)] = None,
    train_scenes: Annotated[
        str | None, typer.Option(help=f"Scene numbers overriding the train split: {Split.train.help}.")
    ] = None,
    val_scenes: Annotated[
        str | None, typer.Option(help=f"Scene numbers overriding the val split: {Split.val.help}.")
    ] = None,
) -> None:
    """Train by the published FlowCNRDB protocol (defaults) on a RawFusion-layout folder."""
    from harness.progress import progress_bar
    from harness.train.loop import train

    cfg = TrainConfig(
        **given(
            model=model,
            data=data,
            out=out,
            iters=iters,
            stop_after=stop_after,
            batch=batch,
            crop=crop,
            lr=lr,
            amp=amp,
            val_every=val_every,
            val_crop=val_crop,
            log_every=log_every,
            resume=resume,
            device=device,
            seed=seed,
            workers=workers,
            train_scenes=train_scenes,
            val_scenes=val_scenes,
            model_args=model_args,
            trust_code=trust_code,
            micro_batch=micro_batch,
            memory_check=memory_check,
        )
    )
    with progress_bar("training") as advance:
        row = train(cfg, advance)
    if row:
        validated = (
            f"not validated at this iteration (every {cfg.val_every})"
            if math.isnan(row["val_psnr"])  # a stop between
            else f"val PSNR {row['val_psnr']:.3f} dB"
        )
        console.print(f"iteration {row['iteration']}: loss {row['loss']:.4g}, {validated}")
    console.print(f"checkpoints: {cfg.out / 'last.pth'}, {cfg.out / 'best.pth'}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
