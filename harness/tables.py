"""Rich tables for the command line: per-scene scores and the budget."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table


def fmt(value: Any, places: int) -> str:
    """A number with ``places`` decimals; '-' for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value):.{places}f}"


def render_scores(console: Console, rows: list[tuple[str, dict[str, Any]]], summary: dict[str, Any]) -> None:
    """Per-scene PSNR/SSIM and the mean, as `harness evaluate` and `harness score` print them."""
    table = Table(title=f"{summary.get('model', '')} on {summary.get('split', '')}")
    for col in ("scene", "PSNR (dB)", "SSIM (server)", "SSIM (standard)", "seconds"):
        table.add_column(col, justify="right")
    for scene, row in rows:
        table.add_row(scene, *(fmt(row.get(k), p) for k, p in (("psnr", 4), ("ssim", 5), ("ssim_standard", 5), ("seconds", 2))))
    table.add_section()
    table.add_row("mean", *(fmt(summary.get(k), p) for k, p in (("psnr", 4), ("ssim", 5), ("ssim_standard", 5))), "")
    console.print(table)
    diff = (summary.get("tiling") or {}).get("difference_to_full_image")
    if diff:
        console.print(f"tiling vs full image on {diff['scene']}: max |diff| {diff['max_abs_diff']:.3g}, mean {diff['mean_abs_diff']:.3g}")


def render_budget(console: Console, model: str, doc: dict[str, Any]) -> None:
    """The budget document as tables: counters, reconciliation, same-padding convolutions, verdicts."""
    h, w = doc["input"][2:]
    console.print(f"[bold]{model}[/] at {h}x{w}: {doc['params']:,} parameters ({doc['params'] / 1e6:.3f} M)")
    table = Table(title="counters (MACs: one fused multiply-add = 1)")
    for col in ("counter", "MACs (T)", "native", "uncounted (T)", "complete (T)", "how"):
        table.add_column(col, overflow="fold")
    for name, c in doc["counters"].items():
        unc = sum(c["uncounted"].values())
        table.add_row(name, f"{c['macs'] / 1e12:.4f}", f"{c['reported']:.4g} {c['unit']}", f"{unc / 1e12:.4f}",
                      f"{(c['macs'] + unc) / 1e12:.4f}", c["how"])
    console.print(table)
    names = [n for n in doc["counters"] if n != "analytic"]
    rec = Table(title="reconciliation by operator (analytic cost, G MACs)")
    for col in ("operator", "analytic", *names):
        rec.add_column(col)
    for row in doc["reconciliation"]:
        cells = [row[n] if isinstance(row[n], str) else f"{row[n] / 1e9:.3f}" for n in names]
        rec.add_row(row["operator"], f"{row['analytic'] / 1e9:.3f}", *cells)
    console.print(rec)
    same = doc["same_padding_convs"]
    if same:
        console.print(f"{len(same)} padding='same' convolutions (fvcore: aten::_convolution_mode, counted 0): " + ", ".join(same))
    for label, v in doc["verdicts"].items():
        if v is None:
            continue
        mark = "[green]PASS[/]" if v["pass"] else "[red]FAIL[/]"
        detail = f"{v['flops_t']:.4f} T fvcore" if "flops_t" in v else ", ".join(f"{k} {t:.4f} T" for k, t in v["complete_t"].items())
        console.print(f"{label}: {mark} ({v['params_m']:.3f} M params; {detail}) - {v['rule']}")
