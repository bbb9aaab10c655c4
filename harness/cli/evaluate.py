"""``harness evaluate`` and ``harness score``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import (
    BUDGET_HELP,
    SPLIT_HELP,
    BackendOpt,
    DataOpt,
    DeviceOpt,
    JsonOpt,
    ModelArgsOpt,
    ModelOpt,
    PrecisionOpt,
    ScenesOpt,
    ThreadsOpt,
    TrustCodeOpt,
    WeightsOpt,
    console,
    default_of,
    emit_json,
    err_console,
    given,
)
from harness.options import EvalConfig, Quantize, Split
from harness.progress import progress_bar


def evaluate_cmd(
    model: ModelOpt,
    model_args: ModelArgsOpt = None,
    trust_code: TrustCodeOpt = None,
    weights: WeightsOpt = None,
    data: DataOpt = None,
    split: Annotated[Split | None, typer.Option(help=SPLIT_HELP, show_default=default_of(EvalConfig, "split"))] = None,
    scenes: ScenesOpt = None,
    out: Annotated[Path | None, typer.Option(help="Run folder.", show_default="runs/MODEL-SPLIT")] = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    backend: BackendOpt = None,
    threads: ThreadsOpt = None,
    tile: Annotated[
        int | None,
        typer.Option(
            help="Tile size for small devices (0: full image).", show_default=default_of(EvalConfig, "tile"), min=0
        ),
    ] = None,
    overlap: Annotated[
        int | None,
        typer.Option(
            help="Tile overlap (with --tile); tiles are cut in its middle.",
            show_default=default_of(EvalConfig, "overlap"),
            min=0,
        ),
    ] = None,
    quantize: Annotated[
        Quantize | None,
        typer.Option(
            help="floor matches the truncated GT; round is +0.5 LSB.", show_default=default_of(EvalConfig, "quantize")
        ),
    ] = None,
    force: Annotated[bool | None, typer.Option("--force", help="Recompute every scene.")] = None,
    random_init: Annotated[
        bool | None,
        typer.Option(
            "--random-init",
            help="Run with random weights, N(0, 0.02) from seed 0, the same in every run (a smoke test, not a score).",
        ),
    ] = None,
    report: Annotated[bool, typer.Option(help="Write report.html into the run folder.")] = True,
    budget: Annotated[bool, typer.Option(help=BUDGET_HELP)] = True,
    as_json: JsonOpt = False,
) -> None:
    """Full-image inference and PSNR/SSIM exactly as the challenge server scored them."""
    from harness.allocator import keep_freed_memory
    from harness.evaluate import evaluate
    from harness.run import RunFolder
    from harness.tables import render_scores

    keep_freed_memory()  # this process is the runner: its allocator is its own
    cfg = EvalConfig(
        model,
        **given(
            weights=weights,
            data=data,
            split=split,
            scenes=scenes,
            out=out,
            device=device,
            precision=precision,
            backend=backend,
            threads=threads,
            tile=tile,
            overlap=overlap,
            quantize=quantize,
            force=force,
            random_init=random_init,
            model_args=model_args,
            trust_code=trust_code,
        ),
    )
    with progress_bar("evaluating") as advance:
        summary = evaluate(cfg, advance)
    folder = RunFolder(cfg.run_dir)
    if not as_json:
        render_scores(console, folder.read_metrics(), summary)
    if report:
        from harness.report.render import render_run_report

        with progress_bar("report", err_console) as advance:
            path = render_run_report(folder.root, budget=budget, progress=advance, trust_code=cfg.trust_code)
        if not as_json:
            console.print(f"report: {path}")
    if as_json:
        emit_json({**asdict(summary), "run": str(folder.root.resolve())})
    else:
        console.print(f"outputs: {folder.res}")


def score_cmd(
    res_dir: Annotated[Path, typer.Argument(help="Folder of Scene-XXX-out.tif (as submitted).")],
    gt: Annotated[Path, typer.Option(help="Folder holding Scene-XXX-gt.tif.")],
    out: Annotated[
        Path | None, typer.Option(help="Run folder for metrics.csv and summary.json.", show_default="RES_DIR-score")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score an existing folder of outputs the way the server read a submission."""
    from harness.run import RunFolder
    from harness.scoring import score_run
    from harness.tables import render_scores

    res_dir = res_dir.resolve()
    target = RunFolder(out or res_dir.with_name(res_dir.name + "-score"))
    with progress_bar("scoring") as advance:
        summary = score_run(res_dir, gt, target.root, advance)
    if as_json:
        emit_json({**asdict(summary), "run": str(target.root.resolve())})
        return
    render_scores(console, target.read_metrics(), summary)
    console.print(f"wrote {target.summary_json}")


def merge_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Evaluate runs of one model and settings over disjoint scenes.")],
    out: Annotated[Path, typer.Option(help="The merged run folder (new, or empty).")],
    as_json: JsonOpt = False,
) -> None:
    """Merge evaluate runs over disjoint scenes (one per machine, say) into the run one evaluate would have written."""
    from harness.merge import merge_runs
    from harness.run import RunFolder
    from harness.tables import render_scores

    for run in runs:
        RunFolder(run).check_not_input(out)
    summary = merge_runs(runs, out)
    if as_json:
        emit_json({**asdict(summary), "run": str(out.resolve())})
        return
    render_scores(console, RunFolder(out).read_metrics(), summary)
    console.print(f"wrote {out} (`harness report {out}` renders its report)")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
    app.command("score")(score_cmd)
    app.command("merge")(merge_cmd)
