"""``harness report`` and ``harness compare``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import BUDGET_HELP, JsonOpt, TrustCodeOpt, console, emit_json, err_console


def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A `harness evaluate` run folder.")],
    budget: Annotated[bool, typer.Option(help=BUDGET_HELP)] = True,
    budget_json: Annotated[
        Path | None,
        typer.Option(help="Take the budget from this `harness budget --json` output instead.", show_default="computed"),
    ] = None,
    trust_code: TrustCodeOpt = None,
    out: Annotated[Path | None, typer.Option(help="HTML file.", show_default="RUN_DIR/report.html")] = None,
) -> None:
    """A self-contained HTML report of a run."""
    from harness.progress import progress_bar
    from harness.report.render import render_run_report

    with progress_bar("report", err_console) as advance:
        advance(0, 0, "reading the run")
        path = render_run_report(run_dir, budget_json, out, budget, advance, bool(trust_code))
    console.print(f"wrote {path}")


def compare_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run folders; deltas are against the first.")],
    out: Annotated[Path, typer.Option(help="HTML file.")] = Path("reports/compare.html"),
    budget: Annotated[bool, typer.Option(help=BUDGET_HELP)] = True,
    trust_code: TrustCodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare runs on the scenes they share, best mean PSNR first, with parameters, FLOPs and runtime per scene:
    per-scene deltas, wins and losses, paired plot."""
    from harness.progress import progress_bar
    from harness.report.render import render_compare
    from harness.tables import render_compare_runs

    with progress_bar("compare", err_console) as advance:
        path, doc = render_compare(runs, out, budget, bool(trust_code), advance)
    if as_json:
        emit_json({**doc, "report": str(path)})
        return
    render_compare_runs(console, doc)
    console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
    app.command("compare")(compare_cmd)
