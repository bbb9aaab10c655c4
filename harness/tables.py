"""Rich tables for the command line: models, data checks, per-scene scores and the budget."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from harness.run import RunSummary


def fmt(value: Any, places: int = 4) -> str:
    """A number with ``places`` decimals; '-' for a missing value; anything else as text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{float(value):.{places}f}"
    return str(value)


def render_models(console: Console, rows: list[dict[str, Any]]) -> None:
    """``harness models``."""
    table = Table(title="harness models")
    for col in ("name", "params (M)", "key config", "description", "weights"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(row["name"], fmt(row["params_m"], 3), row["key_config"], row["description"], row["weights"])
    console.print(table)


def render_check(console: Console, report: Any) -> None:
    """``harness data check``: counts, sizes, dtypes and value ranges (problems are printed apart)."""
    table = Table(title=f"{report.folder} ({report.split.value})", show_header=False)
    for name, count in report.split_counts().items():
        table.add_row(f"scenes {name}", str(count))
    table.add_row("scenes with ground truth", str(report.with_gt))
    table.add_row("sizes (H x W)", ", ".join(f"{h}x{w} ({n})" for (h, w), n in sorted(report.sizes.items())))
    table.add_row("dtypes", ", ".join(f"{d} ({n})" for d, n in sorted(report.dtypes.items())))
    for group, (lo, hi) in report.ranges.items():
        table.add_row(f"range {group}", f"[{lo:.4g}, {hi:.4g}]")
    console.print(table)


SCORE_COLUMNS = (("psnr", 4), ("ssim", 5), ("ssim_standard", 5))


def render_scores(console: Console, rows: pd.DataFrame, summary: RunSummary) -> None:
    """Per-scene PSNR/SSIM and the mean, as `harness evaluate` and `harness score` print them."""
    table = Table(title=f"{summary.model or summary.res or ''} on {summary.split or summary.data}")
    for col in ("scene", "PSNR (dB)", "SSIM (server)", "SSIM (standard)", "seconds"):
        table.add_column(col, justify="right")
    for row in rows.to_dict("records"):
        table.add_row(str(row["scene"]), *(fmt(row.get(k), p) for k, p in SCORE_COLUMNS), fmt(row.get("seconds"), 2))
    table.add_section()
    table.add_row("mean", *(fmt(summary.scores[k], p) for k, p in SCORE_COLUMNS), "")
    console.print(table)


def _counter_table(doc: dict[str, Any]) -> Table:
    table = Table(title="counters (MACs: one fused multiply-add = 1)")
    for col in ("counter", "MACs (T)", "native", "uncounted (T)", "complete (T)", "how"):
        table.add_column(col, overflow="fold")
    for name, c in doc["counters"].items():
        if "failed" in c:
            table.add_row(name, "-", "-", "-", "-", f"failed: {c['failed']}")
            continue
        unc = sum(c["uncounted"].values())
        table.add_row(
            name,
            f"{c['macs'] / 1e12:.4f}",
            f"{c['reported']:.4g} {c['unit']}",
            f"{unc / 1e12:.4f}",
            f"{(c['macs'] + unc) / 1e12:.4f}",
            c["how"],
        )
    return table


def _notes(console: Console, doc: dict[str, Any]) -> None:
    """What a counter skipped, by operator name."""
    for name, c in doc["counters"].items():
        if name == "analytic" and c.get("uncounted_ops"):
            ops = ", ".join(f"{o['op']} ({o['calls']} calls, {o['elements']:,} elements)" for o in c["uncounted_ops"])
            console.print(f"[red]uncounted[/] by the analytic counter (no cost formula): {ops}")
        if c.get("unsupported_ops"):
            console.print(
                f"{name} skipped: " + ", ".join(f"{op} x{n}" for op, n in sorted(c["unsupported_ops"].items()))
            )


def _reconciliation_table(doc: dict[str, Any]) -> Table:
    names = [n for n in doc["counters"] if n != "analytic"]
    rec = Table(title="reconciliation by operator (analytic cost, G MACs)")
    for col in ("operator", "analytic", *names):
        rec.add_column(col)
    for row in doc["reconciliation"]:
        cells = [row[n] if isinstance(row[n], str) else f"{row[n] / 1e9:.3f}" for n in names]
        rec.add_row(row["operator"], f"{row['analytic'] / 1e9:.3f}", *cells)
    return rec


def render_budget(console: Console, model: str, doc: dict[str, Any]) -> None:
    """The budget document as tables: counters, reconciliation, same-padding convolutions, verdicts."""
    h, w = doc["input"][2:]
    console.print(f"[bold]{model}[/] at {h}x{w}: {doc['params']:,} parameters ({doc['params'] / 1e6:.3f} M)")
    console.print(_counter_table(doc))
    console.print(_reconciliation_table(doc))
    _notes(console, doc)
    same = doc["same_padding_convs"]
    if same:
        console.print(
            f"{len(same)} padding='same' convolutions (fvcore: aten::_convolution_mode, counted 0): " + ", ".join(same)
        )
    for label, v in doc["verdicts"].items():
        if v is None:
            continue
        if "na" in v:
            console.print(f"{label}: [yellow]n/a[/] - {v['na']}", highlight=False)
            continue
        mark = "[yellow]UNDECIDED[/]" if v["pass"] is None else "[green]PASS[/]" if v["pass"] else "[red]FAIL[/]"
        detail = (
            f"{v['flops_t']:.4f} T fvcore"
            if "flops_t" in v
            else ", ".join(f"{k} {t:.4f} T" for k, t in v["complete_t"].items())
        )
        console.print(f"{label}: {mark} ({v['params_m']:.3f} M params; {detail}) - {v.get('undecided') or v['rule']}")
