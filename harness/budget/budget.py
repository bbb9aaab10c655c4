"""``harness budget``: parameters, every counter in MACs, reconciliation and verdicts.

Each counter's ``uncounted`` lists the operators it skips, with their cost
from the analytic counter (what each counter covers is in ``COVERS``, from
``shared/spec/counters.md`` and checked by the tests). ``official`` is the
organisers' verdict (parameters < 30.0 M and fvcore < 4.0 T, fvcore 'flops'
being MACs); ``strict`` asks the same of every counter's complete count
(counted + uncounted).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from torch import nn

from harness.budget.analytic import CATEGORIES, AnalyticCount, analytic_count
from harness.budget.counters import (
    Measured,
    flop_counter_mode_count,
    fvcore_count,
    ptflops_aten_count,
    ptflops_pytorch_count,
)
from harness.challenge import IMAGE_HEIGHT, IMAGE_SIZE, IMAGE_WIDTH, MAC_LIMIT, NUM_FRAMES, PARAM_LIMIT
from harness.errors import HarnessError, first_line
from harness.options import COUNTERS
from harness.progress import Progress, notify
from harness.registry import model_multiple
from harness.sources import ModelSource, parse_model_args, resolve_model

PARAMS_RULE = f"params < {PARAM_LIMIT / 1e6:.1f} M"
MACS_RULE = f"< {MAC_LIMIT / 1e12:.1f} T"

COVERS: dict[str, set[str]] = {
    "fvcore": {
        "conv",
        "conv_transpose",
        "linear",
        "layer_norm",
        "group_norm",
        "batch_norm",
        "grid_sample",
        "interpolate",
    },
    "ptflops_pytorch": {
        "conv",
        "conv_same",
        "conv_transpose",
        "linear",
        "bias",
        "layer_norm",
        "group_norm",
        "batch_norm",
        "activation",
        "pool",
        "interpolate",
    },
    "ptflops_aten": {"conv", "conv_same", "conv_transpose", "linear", "bias"},
    "flop_counter_mode": {"conv", "conv_same", "conv_transpose", "linear", "attention"},
    "analytic": set(CATEGORIES),
}
RUNNERS = {
    "fvcore": fvcore_count,
    "ptflops_pytorch": ptflops_pytorch_count,
    "ptflops_aten": ptflops_aten_count,
    "flop_counter_mode": flop_counter_mode_count,
}
# fvcore's operator names -> the analytic categories they count.
FVCORE_OPS = {
    "conv": ("conv", "conv_transpose"),
    "linear": ("linear",),
    "addmm": ("linear",),
    "matmul": ("linear",),
    "bmm": ("linear",),
    "mm": ("linear",),
    "einsum": ("linear",),
    "layer_norm": ("layer_norm",),
    "group_norm": ("group_norm",),
    "batch_norm": ("batch_norm",),
    "instance_norm": ("batch_norm",),
    "upsample_nearest2d": ("interpolate",),
    "upsample_bilinear2d": ("interpolate",),
    "grid_sampler": ("grid_sample",),
}


def parse_counters(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in COUNTERS]
    if unknown or not names:
        raise HarnessError(f"--counters: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(COUNTERS)}")
    return names


def parameters_by_module(model: nn.Module) -> dict[str, int]:
    out: Counter[str] = Counter()
    for name, p in model.named_parameters():
        out[name.split(".")[0]] += p.numel()
    return dict(out)


def budget(model: nn.Module, size: tuple[int, int], counters: list[str]) -> dict[str, Any]:
    """The budget document (the JSON of ``harness budget --json``)."""
    mult = model_multiple(model)
    h, w = size
    if h <= 0 or w <= 0 or h % mult or w % mult:
        raise HarnessError(f"--size: H and W must be positive multiples of {mult}, got {h}x{w}")
    params = sum(p.numel() for p in model.parameters())
    t0 = time.perf_counter()
    try:
        analytic, analytic_failed = analytic_count(model, (1, NUM_FRAMES, h, w)), None
    except (Exception, SystemExit) as exc:  # somebody else's model: the others run, the strict verdict is undecided
        analytic, analytic_failed = AnalyticCount(), f"{type(exc).__name__}: {first_line(exc)}"
    results: dict[str, dict[str, Any]] = {}
    with contextlib.redirect_stdout(sys.stderr):  # what counters print is not the command's output (--json)
        for name in counters:
            results[name] = _run_counter(name, model, size, analytic, analytic_failed)
    return {
        "params": int(params),
        "params_by_module": parameters_by_module(model),
        "input": [1, NUM_FRAMES, h, w],
        "counters": results,
        "reconciliation": _reconcile(analytic, results),
        "same_padding_convs": analytic.same_padding_convs,
        "verdicts": _verdicts(params, results, analytic, size, analytic_failed),
        "seconds": time.perf_counter() - t0,
    }


def _run_counter(
    name: str, model: nn.Module, size: tuple[int, int], analytic: AnalyticCount, analytic_failed: str | None
) -> dict[str, Any]:
    """One counter's row; a counter that cannot trace a model, or crashes on it, says so and hides no other."""
    t = time.perf_counter()
    if name == "analytic" and analytic_failed:
        return {"failed": analytic_failed, "seconds": 0.0}
    try:
        measured = _analytic_measured(analytic, size) if name == "analytic" else RUNNERS[name](model, size)
    except (Exception, SystemExit) as exc:  # somebody else's model: any error is this counter's failure, in one line
        return {"failed": f"{type(exc).__name__}: {first_line(exc)}", "seconds": time.perf_counter() - t}
    return _describe(name, measured, analytic, time.perf_counter() - t)


def _verdicts(
    params: int,
    results: dict[str, dict[str, Any]],
    analytic: AnalyticCount,
    size: tuple[int, int],
    analytic_failed: str | None = None,
) -> dict[str, Any]:
    if tuple(size) != IMAGE_SIZE:
        note = f"n/a: the limits are defined at {IMAGE_HEIGHT}x{IMAGE_WIDTH}; run with --size {IMAGE_HEIGHT}x{IMAGE_WIDTH} for a verdict"
        return {
            "official": {"pass": None, "params_m": params / 1000**2, "rule": note, "na": note},
            "strict": {"pass": None, "params_m": params / 1000**2, "complete_t": {}, "rule": note, "na": note},
        }
    ok = {n: r for n, r in results.items() if "failed" not in r}
    official = None
    if "fvcore" in ok:
        official = {
            "pass": params < PARAM_LIMIT and ok["fvcore"]["macs"] < MAC_LIMIT,
            "params_m": params / 1000**2,
            "flops_t": ok["fvcore"]["macs"] / 1000**4,
            "rule": f"{PARAMS_RULE} and fvcore FlopCountAnalysis total {MACS_RULE} (fvcore counts MACs)",
        }
    complete = {n: r["macs"] + sum(r["uncounted"].values()) for n, r in ok.items()}
    undecided = [op["op"] for op in analytic.uncounted_ops()]
    failed = [n for n, r in results.items() if "failed" in r]
    strict = {
        "pass": None
        if undecided or failed or analytic_failed
        else params < PARAM_LIMIT and all(v < MAC_LIMIT for v in complete.values()),
        "params_m": params / 1000**2,
        "complete_t": {n: v / 1000**4 for n, v in complete.items()},
        "rule": f"{PARAMS_RULE} and every counter's counted + uncounted MACs {MACS_RULE}",
    }
    if analytic_failed:
        strict["undecided"] = f"cannot be decided: the analytic count failed ({analytic_failed})"
    elif failed:
        strict["undecided"] = f"cannot be decided: {', '.join(failed)} failed"
    elif undecided:
        strict["undecided"] = f"cannot be decided: no cost formula for {', '.join(undecided)}"
    return {"official": official, "strict": strict}


def _analytic_measured(analytic: AnalyticCount, size: tuple[int, int]) -> Measured:
    return Measured(
        analytic.total,
        analytic.total,
        "MACs",
        False,
        f"formulas at {size[0]}x{size[1]} on abstract tensors",
        {op: r.macs for op, r in sorted(analytic.by_op.items())},
    )


def _describe(name: str, m: Measured, analytic: AnalyticCount, seconds: float) -> dict[str, Any]:
    covered = COVERS[name]
    uncounted = {
        cat: int(analytic.by_category[cat]) for cat in CATEGORIES if cat not in covered and cat in analytic.by_category
    }
    expected = sum(int(analytic.by_category[c]) for c in covered)
    out: dict[str, Any] = {
        "macs": int(m.macs),
        "reported": m.reported,
        "unit": m.unit,
        "extrapolated": m.extrapolated,
        "how": m.how,
        "uncounted": uncounted,
        "uncounted_ops": analytic.uncounted_ops()
        if name == "analytic"
        else analytic.ops_in(set(uncounted)) + analytic.uncounted_ops(),
        "difference_to_analytic_on_covered_operators": int(m.macs) - expected,
        "seconds": seconds,
    }
    if m.by_operator:
        out["by_operator"] = m.by_operator
    if name == "analytic":
        out["by_category"] = {k: int(v) for k, v in analytic.by_category.items()}
        out["by_module"] = {mod: int(sum(c.values())) for mod, c in sorted(analytic.by_module.items())}
    if m.unsupported:
        out["unsupported_ops"] = m.unsupported
    return out


def _reconcile(analytic: AnalyticCount, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per operator category: its analytic cost and what each counter did with it."""
    rows = []
    fv = results.get("fvcore", {}).get("by_operator", {})
    for cat in CATEGORIES:
        if cat not in analytic.by_category:
            continue
        row: dict[str, Any] = {"operator": cat, "analytic": int(analytic.by_category[cat])}
        for name in results:
            if name == "analytic":
                continue
            if "failed" in results[name]:
                row[name] = "failed"
            elif cat not in COVERS[name]:
                row[name] = "uncounted"
            elif name == "fvcore":
                ops = [op for op, cats in FVCORE_OPS.items() if cat in cats and op in fv]
                row[name] = sum(fv[op] for op in ops) if cat != "conv_transpose" else "in conv"
            else:
                row[name] = "counted"
        rows.append(row)
    return rows


def build_for_budget(
    spec: str, weights: Path | None, model_args: str | None = None, trust_code: bool = False
) -> tuple[nn.Module, ModelSource, dict[str, str] | None]:
    """The model to count, from any source; with ``weights``, loaded strictly (the budget is of exactly that checkpoint)."""
    from harness.checkpoint import load_checkpoint
    from harness.io import sha256_file

    model, source = resolve_model(spec, parse_model_args(model_args), trust_code)
    model.eval()
    weights = weights or (Path(source.weights) if source.weights else None)
    if weights is None:
        return model, source, None
    load_checkpoint(model, weights)
    return model, source, {"path": str(weights), "sha256": sha256_file(weights)}


def cached_budget(
    model: nn.Module, source: ModelSource, size: tuple[int, int], counters: list[str], progress: Progress | None = None
) -> dict[str, Any]:
    """The budget of a model at a size, computed once and kept in the cache (keyed by the model's source, its file's
    sha256, configuration, size, counters and the harness version), never recomputed in silence."""
    import hashlib
    import json

    import harness
    from harness.data.embedded import cache_root
    from harness.io import read_json, write_json
    from harness.registry import model_config

    key = json.dumps(
        [source.spec, source.sha256, source.args, model_config(model), list(size), counters, harness.__version__],
        sort_keys=True,
        default=str,
    )
    path = cache_root() / "budgets" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"
    if path.is_file():
        return read_json(path)
    notify(progress, 0, 0, f"computing the budget at {size[0]}x{size[1]} (once; cached in {path.parent})")
    doc = budget(model, size, counters)
    doc["source"] = source.as_dict()
    write_json(path, doc)
    notify(progress, 1, 1, "budget computed")
    return doc
