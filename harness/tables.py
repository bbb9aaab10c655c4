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


def _longest_word(texts: list[str]) -> int:
    return max((len(word) for text in texts for word in text.split()), default=1)


def fitted_tables(title: str, headers: list[str], rows: list[list[str]], width: int, keys: int = 1) -> list[Table]:
    """Tables of ``rows`` in which no word is ever broken: the first ``keys`` columns (names) never wrap, the others
    wrap between words only; columns that do not fit in ``width`` move, whole, into continuation tables that repeat
    the key columns."""
    columns = [[h, *(r[i] for r in rows)] for i, h in enumerate(headers)]
    need = [max(map(len, col)) if i < keys else _longest_word(col) for i, col in enumerate(columns)]
    groups: list[list[int]] = [list(range(keys))]
    for i in range(keys, len(headers)):
        group = groups[-1]
        if len(group) > keys and sum(need[j] + 3 for j in [*group, i]) + 1 > width:
            groups.append(list(range(keys)))
        groups[-1].append(i)
    tables = []
    for n, group in enumerate(groups):
        table = Table(title=title if n == 0 else f"{title} (continued)")
        for i in group:
            table.add_column(headers[i], no_wrap=i < keys, min_width=need[i])
        for row in rows:
            table.add_row(*(row[i] for i in group))
        tables.append(table)
    return tables


def print_fitted(console: Console, title: str, headers: list[str], rows: list[list[str]], keys: int = 1) -> None:
    for table in fitted_tables(title, headers, rows, console.width, keys):
        console.print(table)


def render_models(console: Console, rows: list[dict[str, Any]]) -> None:
    """``harness models``."""
    cells = [[r["name"], fmt(r["params_m"], 3), r["weights"], r["key_config"], r["description"]] for r in rows]
    print_fitted(console, "harness models", ["name", "params (M)", "weights", "key config", "description"], cells)


def render_check(console: Console, report: Any) -> None:
    """``harness data check``: counts, sizes, dtypes and value ranges (problems are printed apart)."""
    table = Table(title=f"{report.folder} ({report.label})", show_header=False)
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


def _counter_rows(doc: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, c in doc["counters"].items():
        if "failed" in c:
            rows.append([name, "-", "-", "-", "-", f"failed: {c['failed']}"])
            continue
        unc = sum(c["uncounted"].values())
        rows.append(
            [
                name,
                f"{c['macs'] / 1e12:.4f}",
                f"{c['reported']:.4g} {c['unit']}",
                f"{unc / 1e12:.4f}",
                f"{(c['macs'] + unc) / 1e12:.4f}",
                c["how"],
            ]
        )
    return rows


def _notes(console: Console, doc: dict[str, Any]) -> None:
    """What a counter skipped, by operator name."""
    for name, c in doc["counters"].items():
        if name == "analytic" and c.get("uncounted_ops"):
            ops = ", ".join(f"{o['op']} ({o['calls']} calls, {o['elements']:,} elements)" for o in c["uncounted_ops"])
            console.print(f"[red]uncounted[/] by the analytic counter (no cost formula): {ops}", soft_wrap=False)
        if c.get("unsupported_ops"):
            console.print(
                f"{name} skipped: " + ", ".join(f"{op} x{n}" for op, n in sorted(c["unsupported_ops"].items())),
                soft_wrap=False,
            )


def _reconciliation_rows(doc: dict[str, Any], names: list[str]) -> list[list[str]]:
    return [
        [
            row["operator"],
            f"{row['analytic'] / 1e9:.3f}",
            *(row[n] if isinstance(row[n], str) else f"{row[n] / 1e9:.3f}" for n in names),
        ]
        for row in doc["reconciliation"]
    ]


def render_budget(console: Console, model: str, doc: dict[str, Any]) -> None:
    """The budget document as tables: counters, reconciliation, same-padding convolutions, verdicts."""
    h, w = doc["input"][2:]
    console.print(f"[bold]{model}[/] at {h}x{w}: {doc['params']:,} parameters ({doc['params'] / 1e6:.3f} M)")
    counters = ["counter", "MACs (T)", "native", "uncounted (T)", "complete (T)", "how"]
    print_fitted(console, "counters (MACs: one fused multiply-add = 1)", counters, _counter_rows(doc))
    names = [n for n in doc["counters"] if n != "analytic"]
    rec = ["operator", "analytic", *names]
    print_fitted(console, "reconciliation by operator (analytic cost, G MACs)", rec, _reconciliation_rows(doc, names))
    _notes(console, doc)
    same = doc["same_padding_convs"]
    if same:
        console.print(
            f"{len(same)} padding='same' convolutions (fvcore: aten::_convolution_mode, counted 0): " + ", ".join(same),
            soft_wrap=False,
        )
    for label, v in doc["verdicts"].items():
        if v is None:
            continue
        if "na" in v:
            console.print(f"{label}: [yellow]n/a[/] - {v['na']}", highlight=False, soft_wrap=False)
            continue
        mark = "[yellow]UNDECIDED[/]" if v["pass"] is None else "[green]PASS[/]" if v["pass"] else "[red]FAIL[/]"
        detail = (
            f"{v['flops_t']:.4f} T fvcore"
            if "flops_t" in v
            else ", ".join(f"{k} {t:.4f} T" for k, t in v["complete_t"].items())
        )
        line = f"{label}: {mark} ({v['params_m']:.3f} M params; {detail}) - {v.get('undecided') or v['rule']}"
        console.print(line, soft_wrap=False)


def render_compare_runs(console: Console, doc: dict[str, Any]) -> None:
    """``harness compare``: the runs, best mean PSNR first, on the scenes they share."""
    headers = ["rank", "run", "PSNR (dB)", "SSIM", "params", "G MACs", "s/scene", f"Δ vs {doc['baseline']}"]
    rows = [
        [
            str(r["rank"]),
            r["label"],
            fmt(r["psnr"]),
            fmt(r["ssim"], 5),
            f"{r['parameters']:,}" if r["parameters"] is not None else "-",
            fmt(r["fvcore_gmacs"], 1),
            fmt(r["seconds_per_scene"], 2),
            f"{r['delta']:+.4f}",
        ]
        for r in doc["runs"]
    ]
    print_fitted(console, f"{len(doc['runs'])} runs on {len(doc['shared'])} shared scene(s)", headers, rows, keys=2)
