"""``harness report`` and ``harness compare``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import console, err_console


def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A `harness evaluate` run folder.")],
    budget: Annotated[
        Path | None, typer.Option(help="`harness budget --json` output.", show_default="computed now")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="HTML file.", show_default="RUN_DIR/report.html")] = None,
    compute_budget: Annotated[
        bool,
        typer.Option(
            "--budget-compute/--no-budget", help="Compute the budget (once, cached) when no --budget is given."
        ),
    ] = True,
) -> None:
    """A self-contained HTML report of a run."""
    from harness.progress import progress_bar
    from harness.report.render import render_run_report

    with progress_bar("report", err_console) as advance:
        advance(0, 0, "reading the run")
        path = render_run_report(run_dir, budget, out, compute_budget, advance)
    console.print(f"wrote {path}")


def compare_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run folders; deltas are against the first.")],
    out: Annotated[Path, typer.Option(help="HTML file.")] = Path("reports/compare.html"),
) -> None:
    """Compare runs on the scenes they share: per-scene deltas, wins and losses, paired plot."""
    from harness.report.render import render_compare

    console.print(f"wrote {render_compare(runs, out)}")


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
    app.command("compare")(compare_cmd)
