"""``harness data check`` and ``harness data synth``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.challenge import FIRST_HIDDEN_SCENE, TRAIN_SCENES, VAL_SCENES, parse_size
from harness.cli.common import (
    SPLIT_HELP,
    BoundaryGroup,
    JsonOpt,
    ScenesOpt,
    console,
    default_of,
    emit_json,
    err_console,
    given,
)
from harness.options import Split, SynthConfig
from harness.progress import progress_bar

data_app = typer.Typer(cls=BoundaryGroup, no_args_is_help=True, help="Check and synthesise RawFusion-layout data.")


@data_app.command("check")
def data_check_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder of Scene-XXX-in-N.tif / Scene-XXX-gt.tif files.")],
    split: Annotated[Split | None, typer.Option(help=SPLIT_HELP, show_default="every scene present")] = None,
    scenes: ScenesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check every scene: frames present and readable, sizes, dtypes, finite values, GT range."""
    from harness.data.check import check_folder
    from harness.errors import CheckFailed
    from harness.tables import render_check

    with progress_bar("checking") as advance:
        report = check_folder(folder, split, scenes, advance)
    if as_json:
        emit_json(report.as_dict())
        if not report.ok:
            raise typer.Exit(1)
        return
    render_check(console, report)
    for problem in report.problems:
        err_console.print(str(problem), highlight=False, soft_wrap=True, markup=False)
    if not report.ok:
        raise CheckFailed(f"{len(report.problems)} problem(s) in {folder}")
    console.print(f"[green]ok[/]: {len(report.scenes)} scene(s)")


SIZE_DEFAULT = f"{default_of(SynthConfig, 'height')}x{default_of(SynthConfig, 'width')}"


@data_app.command("synth")
def data_synth_cmd(
    out: Annotated[Path, typer.Argument(help="Folder to create.")],
    train_scenes: Annotated[
        int | None,
        typer.Option(
            help=f"Training scenes, numbered from {TRAIN_SCENES.start:03d}.",
            show_default=default_of(SynthConfig, "train_scenes"),
            min=0,
        ),
    ] = None,
    val_scenes: Annotated[
        int | None,
        typer.Option(
            help=f"Validation scenes, numbered from {VAL_SCENES.start}.",
            show_default=default_of(SynthConfig, "val_scenes"),
            min=0,
        ),
    ] = None,
    size: Annotated[str | None, typer.Option(help="H x W, multiples of 32.", show_default=SIZE_DEFAULT)] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Random seed (same seed, same bytes).", show_default=default_of(SynthConfig, "seed"), min=0),
    ] = None,
    test_scenes: Annotated[
        int | None,
        typer.Option(
            help=f"Scenes without ground truth in OUT/test, numbered from {FIRST_HIDDEN_SCENE} (like the official inputs).",
            show_default=default_of(SynthConfig, "test_scenes"),
            min=0,
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace a non-empty OUT.")] = False,
) -> None:
    """Synthesise a RawFusion-layout dataset from scikit-image's photographs."""
    from harness.data.synth import synthesize

    height, width = parse_size(size) if size else (None, None)
    cfg = SynthConfig(
        **given(
            train_scenes=train_scenes,
            val_scenes=val_scenes,
            height=height,
            width=width,
            seed=seed,
            test_scenes=test_scenes,
        )
    )
    with progress_bar("synthesising") as advance:
        synthesize(out, cfg, force=force, progress=advance)
    console.print(
        f"wrote {cfg.train_scenes + cfg.val_scenes} scene(s) to {out}"
        + (f", {cfg.test_scenes} without ground truth to {out / 'test'}" if cfg.test_scenes else "")
    )
