"""What "the same run" means for two run folders made apart: everything but what was measured."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

MEASURED = {"timings", "peak_memory_mb", "runtime", "command", "metrics_sha256", "digest"}


def assert_same_run(merged: Path, single: Path, moved: tuple[Path, Path] | None = None) -> None:
    """Outputs byte for byte, rows but their seconds, the settings, and every summary field but the measurements;
    ``moved``: (A, B) where the merged run's paths under folder A are the single run's under B."""
    outputs = lambda run: {p.name: p.read_bytes() for p in sorted((run / "res").iterdir())}
    assert outputs(merged) == outputs(single)
    rows = lambda run: pd.read_csv(run / "metrics.csv").drop(columns="seconds").to_csv(float_format="%.17g")
    assert rows(merged) == rows(single)
    text = lambda run, name: (
        (run / name).read_text().replace(str(moved[0]), str(moved[1]))
        if moved and run == merged
        else (run / name).read_text()
    )
    assert text(merged, "run.json") == text(single, "run.json")
    summary = lambda run: {k: v for k, v in json.loads(text(run, "summary.json")).items() if k not in MEASURED}
    assert summary(merged) == summary(single)
