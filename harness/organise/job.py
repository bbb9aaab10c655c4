"""One team's run, inside its sandbox: ``python -m harness.organise.job SPEC_JSON``.

Evaluates the submission on the test data through the harness runner (scored where ground truth exists), counts
its budget at the challenge size (the official fvcore count and the complete analytic one), times it by the bench
protocol, renders its run report, and writes everything a board needs to ``OUT/job.json``.

A spec with ``scenes`` is one shard of a team's scenes: it evaluates those into ``OUT/run`` and does nothing else.
A spec with ``parts`` (the shards' run folders) merges them into ``OUT/run`` instead of evaluating, then goes on.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.options import EvalConfig


def _latency(model: str, spec: dict[str, Any]) -> dict[str, float]:
    """The bench protocol at the challenge size (a fresh process, a warm-up, timed passes): median, IQR, peak."""
    from harness.bench import bench
    from harness.options import BenchConfig

    run = bench(BenchConfig(model, trust_code=True, device=spec["device"], backends=[spec["backend"]]))["runs"][0]
    return {k: run[k] for k in ("median_seconds", "iqr_seconds", "peak_memory_mb")}


def _eval_config(spec: dict[str, Any]) -> EvalConfig:
    from harness.options import EvalConfig, Split

    return EvalConfig(
        f"submission:{spec['submission']}", data=Path(spec["data"]), split=Split.test, scenes=spec.get("scenes"),
        out=Path(spec["out"]) / "run", trust_code=True, backend=spec["backend"], device=spec["device"],
        threads=spec.get("threads"),
    )  # fmt: skip


def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    from harness.budget.budget import cached_budget
    from harness.challenge import IMAGE_SIZE
    from harness.evaluate import evaluate
    from harness.merge import merge_runs
    from harness.options import REPORT_COUNTERS
    from harness.report.render import render_run_report
    from harness.run import RunFolder
    from harness.sources import resolve_model

    cfg = _eval_config(spec)
    if spec.get("scenes"):  # a shard: its scenes, nothing else
        return {"scenes": evaluate(cfg).scenes}
    model = cfg.model
    phases: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        phases[name] = round(time.perf_counter() - clock[0], 3)
        clock[0] = time.perf_counter()

    summary = merge_runs([Path(p) for p in spec["parts"]], cfg.run_dir) if spec.get("parts") else evaluate(cfg)
    table = RunFolder(cfg.run_dir).scored_metrics()
    lap("merge" if spec.get("parts") else "evaluate")
    built, source = resolve_model(model, trust_code=True)  # counting needs the structure, not the weights
    budget = cached_budget(built.eval(), source, IMAGE_SIZE, list(REPORT_COUNTERS))
    lap("budget")
    render_run_report(cfg.run_dir, trust_code=True)
    lap("report")
    latency = _latency(model, spec) if spec.get("latency") else None
    if latency is not None:
        lap("latency")
    return {**_budget_fields(budget), "latency": latency, "phases": phases, **_run_fields(summary, table)}


def _budget_fields(budget: dict[str, Any]) -> dict[str, Any]:
    fvcore = budget["counters"].get("fvcore", {})
    return {
        "params": budget["params"],
        "fvcore_macs": fvcore.get("macs"),
        "complete_macs": {
            n: c["macs"] + sum(c["uncounted"].values()) for n, c in budget["counters"].items() if "macs" in c
        },
        "uncounted": budget["counters"].get("analytic", {}).get("uncounted_ops", []),
        "verdicts": budget["verdicts"],
    }


def _run_fields(summary: Any, table: Any) -> dict[str, Any]:
    return {
        "psnr": summary.psnr,
        "ssim": summary.ssim,
        "per_scene": {str(r["scene"]): float(r["psnr"]) for r in table.to_dict("records")},
        "scenes": summary.num_scenes,
        "seconds_per_scene": summary.timings.get("mean_seconds_per_scene"),
        "versions": summary.versions,
        "device": summary.device,
        "backend": summary.backend,
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    from harness.errors import HarnessError

    try:
        row = run_job(spec)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    from harness.io import write_json

    write_json(Path(spec["out"], "job.json"), row)


if __name__ == "__main__":
    main()
