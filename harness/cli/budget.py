"""``harness budget``."""

from __future__ import annotations

from typing import Annotated

import typer

from harness.challenge import parse_size
from harness.cli.common import (
    OFFICIAL_SIZE,
    JsonOpt,
    ModelArgsOpt,
    ModelOpt,
    SizeOpt,
    TrustCodeOpt,
    WeightsOpt,
    console,
    emit_json,
    err_console,
)
from harness.options import COUNTERS


def budget_cmd(
    model: ModelOpt,
    model_args: ModelArgsOpt = None,
    trust_code: TrustCodeOpt = None,
    weights: WeightsOpt = None,
    size: SizeOpt = OFFICIAL_SIZE,
    as_json: JsonOpt = False,
    counters: Annotated[
        str | None, typer.Option(help=f"Comma-separated, of: {', '.join(COUNTERS)}.", show_default="all")
    ] = None,
) -> None:
    """Parameters and MACs from several counters, reconciled, against the challenge limits.

    Exit 0 when the verdicts pass (or are n/a: the limits hold at 768x1536 only), 1 when one fails, 2 on bad
    input, 3 when it cannot be decided (a counter failed, or operators have no cost formula)."""
    from harness.budget.budget import budget, build_for_budget, parse_counters
    from harness.errors import CheckFailed, Undecided
    from harness.progress import progress_bar
    from harness.tables import render_budget

    names = parse_counters(counters) if counters is not None else list(COUNTERS)
    hw = parse_size(size)
    built, source, weights_doc = build_for_budget(model, weights, model_args, bool(trust_code))
    with progress_bar("counting", err_console) as advance:
        advance(0, 0, f"{', '.join(names)} at {hw[0]}x{hw[1]}")
        doc = budget(built, hw, names)
    doc["source"], doc["weights"] = source.as_dict(), weights_doc
    if as_json:
        emit_json(doc)
    else:
        render_budget(console, model, doc)
    official, strict = doc["verdicts"]["official"], doc["verdicts"]["strict"]
    if official is not None and official["pass"] is False:
        raise CheckFailed(
            f"{model} fails the official limits: {official['params_m']:.3f} M parameters, {official['flops_t']:.4f} T fvcore"
        )
    if strict["pass"] is False:
        raise CheckFailed(f"{model} fails the strict limits: {strict['rule']}")
    if "undecided" in strict:
        raise Undecided(f"{model}: the strict verdict {strict['undecided']}")


def register(app: typer.Typer) -> None:
    app.command("budget")(budget_cmd)
