"""The ``harness`` command line: a thin layer that parses, calls the library, renders.

One error boundary: a :class:`harness.errors.HarnessError` becomes one line on
stderr and its exit code (2 for bad input); ``HARNESS_DEBUG=1`` shows the
traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from harness.errors import HarnessError
from harness.progress import progress_bar
from harness.tables import render_budget, render_scores

console = Console(soft_wrap=True)
err_console = Console(stderr=True)


class BoundaryGroup(TyperGroup):
    """Turns our own errors into one line and an exit code, for every sub-command."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except HarnessError as exc:
            if os.environ.get("HARNESS_DEBUG"):
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


APP_HELP = (
    "The workbench for the NTIRE 2025 Efficient Burst HDR and Restoration challenge: models, data, "
    "server-exact evaluation, FLOP budgets, training, reports and Codalab-ready zips. "
    "Errors in input print one line and exit 2; HARNESS_DEBUG=1 shows the traceback."
)
app = typer.Typer(cls=BoundaryGroup, no_args_is_help=True, add_completion=False, help=APP_HELP)
data_app = typer.Typer(cls=BoundaryGroup, no_args_is_help=True, help="Check and synthesise RawFusion-layout data.")
app.add_typer(data_app, name="data")

# Options shared by several commands.
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Registered model name (see `harness models`).")]
WeightsOpt = Annotated[Optional[Path], typer.Option(help="Checkpoint (.pth state dict or .safetensors), loaded strictly.")]
DataOpt = Annotated[Optional[Path], typer.Option(help="RawFusion-layout folder; default: the embedded synthetic dataset.")]
SplitOpt = Annotated[str, typer.Option(help="train (000-279), val (280-299), all (with GT) or test (every scene).")]
ScenesOpt = Annotated[Optional[str], typer.Option(help="Scene numbers overriding the split, e.g. 280,283-285.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]


@app.command("models")
def models_cmd(pattern: Annotated[str, typer.Argument(help="Shell-style filter.")] = "*") -> None:
    """List the registered models."""
    from harness.model_table import model_rows

    table = Table(title="harness models")
    for col in ("name", "params (M)", "key config", "description", "weights"):
        table.add_column(col, overflow="fold")
    for row in model_rows(pattern):
        table.add_row(row["name"], f"{row['params_m']:.3f}", row["key_config"], row["description"], row["weights"])
    console.print(table)


@data_app.command("check")
def data_check_cmd(
    folder: Annotated[Path, typer.Argument(help="Folder of Scene-XXX-in-N.tif / Scene-XXX-gt.tif files.")],
    split: Annotated[str, typer.Option(help="Split to check (default: every scene).")] = "test",
    scenes: ScenesOpt = None,
) -> None:
    """Check every scene: frames present and readable, sizes, dtypes, finite values, GT range."""
    from harness.data.check import check_folder
    from harness.errors import CheckFailed

    with progress_bar("checking") as advance:
        report = check_folder(folder, split, scenes, advance)
    table = Table(title=f"{folder} ({split})", show_header=False)
    for name, count in report.split_counts().items():
        table.add_row(f"scenes {name}", str(count))
    table.add_row("scenes with ground truth", str(report.with_gt))
    table.add_row("sizes (H x W)", ", ".join(f"{h}x{w} ({n})" for (h, w), n in sorted(report.sizes.items())))
    table.add_row("dtypes", ", ".join(f"{d} ({n})" for d, n in sorted(report.dtypes.items())))
    for group, (lo, hi) in report.ranges.items():
        table.add_row(f"range {group}", f"[{lo:.4g}, {hi:.4g}]")
    console.print(table)
    for problem in report.problems:
        err_console.print(str(problem), highlight=False, soft_wrap=True)
    if not report.ok:
        raise CheckFailed(f"{len(report.problems)} problem(s) in {folder}")
    console.print(f"[green]ok[/]: {len(report.scenes)} scene(s)")


@data_app.command("synth")
def data_synth_cmd(
    out: Annotated[Path, typer.Argument(help="Folder to create.")],
    train_scenes: Annotated[int, typer.Option(help="Training scenes, numbered from 000.")] = 32,
    val_scenes: Annotated[int, typer.Option(help="Validation scenes, numbered from 280.")] = 8,
    size: Annotated[str, typer.Option(help="H x W, multiples of 32.")] = "256x512",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 0,
    force: Annotated[bool, typer.Option(help="Replace a non-empty OUT.")] = False,
) -> None:
    """Synthesise a RawFusion-layout dataset from scikit-image's photographs."""
    from harness.data.synth import SynthConfig, synthesize

    h, w = _parse_size(size)
    cfg = SynthConfig(train_scenes=train_scenes, val_scenes=val_scenes, height=h, width=w, seed=seed)
    with progress_bar("synthesising") as advance:
        synthesize(out, cfg, force=force, progress=advance)
    console.print(f"wrote {train_scenes + val_scenes} scene(s) to {out}")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise HarnessError(f"--size: expected HxW such as 768x1536, got {text!r}") from None
    return h, w


@app.command("evaluate")
def evaluate_cmd(
    model: ModelOpt,
    weights: WeightsOpt = None,
    data: DataOpt = None,
    split: SplitOpt = "val",
    scenes: ScenesOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder; default runs/MODEL-SPLIT.")] = None,
    device: DeviceOpt = "auto",
    amp: Annotated[bool, typer.Option(help="bfloat16 autocast.")] = False,
    tile: Annotated[int, typer.Option(help="Tile size for small devices (0: full image).")] = 0,
    overlap: Annotated[int, typer.Option(help="Tile overlap, blended linearly.")] = 0,
    quantize: Annotated[str, typer.Option(help="floor (matches the truncated GT) or round.")] = "floor",
    force: Annotated[bool, typer.Option(help="Recompute every scene.")] = False,
    random_init: Annotated[bool, typer.Option(help="Run with untrained weights (a smoke test, not a score).")] = False,
    report: Annotated[bool, typer.Option(help="Write report.html into the run folder.")] = True,
) -> None:
    """Full-image inference and PSNR/SSIM exactly as the challenge server scored them."""
    from harness.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(
        model=model, weights=str(weights) if weights else None, data=str(data) if data else None, split=split,
        scenes=scenes, out=str(out) if out else None, device=device, amp=amp, tile=tile, overlap=overlap,
        quantize=quantize, force=force, random_init=random_init,
    )
    rows: list[tuple[str, dict[str, Any]]] = []
    with progress_bar("evaluating") as advance:
        def on_scene(scene: str, row: dict[str, Any], k: int, n: int) -> None:
            rows.append((scene, row))
            advance(k, n, f"{scene} {row.get('psnr', float('nan')):.2f} dB")

        summary = evaluate(cfg, on_scene=on_scene)
    render_scores(console, rows, summary)
    run_dir = Path(cfg.out) if cfg.out else Path("runs") / f"{model}-{split}"
    if report and summary.get("psnr") is not None:
        from harness.report.render import render_run_report

        console.print(f"report: {render_run_report(run_dir)}")
    console.print(f"outputs: {run_dir / 'res'}")


@app.command("score")
def score_cmd(
    res_dir: Annotated[Path, typer.Argument(help="Folder of Scene-XXX-out.tif (as submitted).")],
    gt: Annotated[Path, typer.Option(help="Folder holding Scene-XXX-gt.tif.")],
    out: Annotated[Optional[Path], typer.Option(help="Where to write metrics.csv and summary.json.")] = None,
) -> None:
    """Score an existing folder of outputs the way the server read a submission."""
    from harness.scoring import mean_scores, score_folder, write_csv, write_json

    if not res_dir.is_dir():
        raise HarnessError(f"{res_dir}: no such folder")
    rows: list[tuple[str, dict[str, Any]]] = []
    with progress_bar("scoring") as advance:
        table = score_folder(res_dir, gt, lambda s, r: (rows.append((s, r)), advance(len(rows), 0, s)))
    summary = {**mean_scores(table), "num_scenes": int(len(table)), "res": str(res_dir), "gt": str(gt)}
    target = out or res_dir.with_name(res_dir.name + "-score")
    write_csv(target / "metrics.csv", table)
    write_json(target / "summary.json", summary)
    render_scores(console, rows, summary)
    console.print(f"wrote {target / 'summary.json'}")


@app.command("train")
def train_cmd(
    model: ModelOpt = "flowcnrdb",
    data: DataOpt = None,
    out: Annotated[Path, typer.Option(help="Run folder (checkpoints, train_log.csv, config.json).")] = Path("runs/train"),
    iters: Annotated[int, typer.Option(help="Iterations of the cosine schedule (published: 224000).")] = 224_000,
    stop_after: Annotated[Optional[int], typer.Option(help="Stop at this iteration, resumable with --resume.")] = None,
    batch: Annotated[int, typer.Option(help="Crops per step (per process under torchrun).")] = 10,
    crop: Annotated[int, typer.Option(help="Crop size (Bayer phase kept).")] = 256,
    lr: Annotated[float, typer.Option(help="AdamW learning rate, decayed by cosine to 1e-7.")] = 3e-4,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="Mixed precision (default: on CUDA).")] = None,
    val_every: Annotated[int, typer.Option(help="Validate and checkpoint every K iterations.")] = 2000,
    val_crop: Annotated[int, typer.Option(help="Fixed centre crop of the validation scenes.")] = 256,
    log_every: Annotated[int, typer.Option(help="Write a train_log.csv row every K iterations.")] = 100,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out exactly where it stopped.")] = False,
    device: DeviceOpt = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the model init, crops and dropout.")] = 0,
    workers: Annotated[int, typer.Option(help="Data-loading worker processes.")] = 2,
    train_scenes: Annotated[Optional[str], typer.Option(help="Scene numbers overriding the train split (000-279).")] = None,
    val_scenes: Annotated[Optional[str], typer.Option(help="Scene numbers overriding the val split (280-299).")] = None,
) -> None:
    """Train by the published FlowCNRDB protocol (defaults) on a RawFusion-layout folder."""
    from harness.train.loop import TrainConfig, train

    cfg = TrainConfig(
        model=model, data=str(data) if data else None, out=str(out), iters=iters, stop_after=stop_after, batch=batch,
        crop=crop, lr=lr, amp=amp, val_every=val_every, val_crop=val_crop, log_every=log_every, resume=resume,
        device=device, seed=seed, workers=workers, train_scenes=train_scenes, val_scenes=val_scenes,
    )
    with progress_bar("training") as advance:
        row = train(cfg, lambda it, n, m: advance(it, n, f"loss {m['loss']:.3g} lr {m['lr']:.3g}"))
    if row:
        console.print(f"iteration {row['iteration']}: loss {row['loss']:.4g}, val PSNR {row['val_psnr']:.3f} dB")
    console.print(f"checkpoints: {out / 'last.pth'}, {out / 'best.pth'}")


@app.command("budget")
def budget_cmd(
    model: ModelOpt,
    weights: WeightsOpt = None,
    size: Annotated[str, typer.Option(help="H x W of one output (the challenge: 768x1536).")] = "768x1536",
    as_json: Annotated[bool, typer.Option("--json", help="Print exactly one JSON document.")] = False,
    counters: Annotated[str, typer.Option(help="Comma-separated counters.")] = "fvcore,ptflops_pytorch,ptflops_aten,flop_counter_mode,analytic",
) -> None:
    """Parameters and MACs from several counters, reconciled, against the challenge limits.

    Exit 0 when the official verdict passes, 1 when it fails, 2 on bad input."""
    import json

    from harness.budget.budget import budget, build_for_budget, parse_counters
    from harness.errors import CheckFailed

    names = parse_counters(counters)
    doc = budget(build_for_budget(model, str(weights) if weights else None), _parse_size(size), names)
    if as_json:
        typer.echo(json.dumps(doc))
    else:
        render_budget(console, model, doc)
    official = doc["verdicts"]["official"]
    if official is not None and not official["pass"]:
        raise CheckFailed(f"{model} fails the official limits: {official['params_m']:.3f} M parameters, {official['flops_t']:.4f} T fvcore")


@app.command("package")
def package_cmd(
    run_dir: Annotated[Optional[Path], typer.Argument(help="A `harness evaluate` run folder to zip.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Zip to write.")] = None,
    expect_scenes: Annotated[Optional[str], typer.Option(help="Scene numbers the zip must hold (default: the run's).")] = None,
    verify: Annotated[Optional[Path], typer.Option(help="Read a results zip as the server did, instead of writing one.")] = None,
    gt: Annotated[Optional[Path], typer.Option(help="With --verify: score against this ground-truth folder.")] = None,
    code: Annotated[Optional[Path], typer.Option(help="Write the code submission of this manifest (submissions/*.toml).")] = None,
    verify_code: Annotated[bool, typer.Option(help="With --code: run its test_demo.py without harness and compare outputs.")] = False,
) -> None:
    """Codalab results zips and code-submission zips, verified the way the server reads them."""
    import json

    from harness.package.results import package_results, verify_zip

    if sum(x is not None for x in (run_dir, verify, code)) != 1:
        raise HarnessError("give exactly one of RUN_DIR, --verify ZIP or --code MANIFEST")
    if verify is not None:
        report = verify_zip(verify, gt)
        console.print(f"{verify}: the server reads {len(report['outputs'])} output(s) from '{report['folder_read']}', sizes {report['shapes']}")
        for note in report["notes"]:
            console.print(f"note: {note}")
        if gt is not None:
            console.print(f"PSNR {report['psnr']:.4f} dB, SSIM {report['ssim']:.5f} (server), {report['ssim_standard']:.5f} (standard)")
        typer.echo(json.dumps({k: v for k, v in report.items() if k != "per_scene"}))
        return
    if code is not None:
        from harness.package.code import package_code, read_manifest, verify_code

        target = out or Path(f"code_{read_manifest(code).stem}.zip")
        package_code(code, target)
        console.print(f"wrote {target}")
        if verify_code:
            result = verify_code(target, code)
            console.print(f"verified: test_demo.py outputs byte-identical to harness evaluate on {result['scenes']} scene(s)")
        return
    assert run_dir is not None
    target = out or run_dir / "submission.zip"
    package_results(run_dir, target, expect_scenes)
    console.print(f"wrote {target}")


@app.command("report")
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A `harness evaluate` run folder.")],
    budget: Annotated[Optional[Path], typer.Option(help="`harness budget --json` output (default: computed now).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="HTML file (default: RUN_DIR/report.html).")] = None,
) -> None:
    """A self-contained HTML report of a run."""
    from harness.report.render import render_run_report

    console.print(f"wrote {render_run_report(run_dir, budget, out)}")


@app.command("compare")
def compare_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run folders; deltas are against the first.")],
    out: Annotated[Path, typer.Option(help="HTML file.")] = Path("reports/compare.html"),
) -> None:
    """Compare runs on the scenes they share: per-scene deltas, wins and losses, paired plot."""
    from harness.report.render import render_compare

    console.print(f"wrote {render_compare(runs, out)}")


def main() -> None:
    """Console entry point."""
    app(prog_name="harness")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
