"""The run folder: its layout and its two typed documents, written and read here only.

A run folder (``harness evaluate`` or ``harness score``) holds::

    res/Scene-XXX-out.tif   8-bit RGB outputs, as submitted
    metrics.csv             one row per scene
    run.json                RunSettings: what must match for a resumed run to reuse rows
    summary.json            RunSummary: the server's numbers and how they were made
    report.html             written by ``harness report`` (and ``evaluate``)

Both documents carry ``schema``; a document of another schema is refused in
one line rather than misread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import HarnessError
from harness.io import read_csv, read_json, sha256_file, write_csv, write_json
from harness.json_values import jsonable

SCHEMA = 3  # 2: the backend that ran (run.json, summary.json) and its runtime details; 3: digests of rows and summary
METRICS = ("psnr", "ssim", "ssim_standard")


@dataclass(frozen=True)
class RunSettings:
    """Everything that decides the outputs: a resumed run must match it exactly."""

    model: str
    source: dict[str, Any]
    model_config: dict[str, Any]
    weights: str | None
    weights_sha256: str | None
    data: str
    quantize: str
    precision: str
    tile: int
    overlap: int
    backend: str = "eager"
    schema: int = SCHEMA

    def changed(self, other: RunSettings) -> list[str]:
        """Names of the settings that differ from ``other``."""
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)]


@dataclass
class RunSummary:
    """``summary.json``: mean scores (None without ground truth) and everything to reproduce them."""

    psnr: float | None
    ssim: float | None
    ssim_standard: float | None
    num_scenes: int
    num_scored: int
    scenes: list[str]
    data: str
    model: str | None = None
    source: dict[str, Any] = field(default_factory=dict)  # harness.sources.ModelSource: kind, name, file, sha256, args
    model_config: dict[str, Any] = field(default_factory=dict)
    parameters: int | None = None
    weights: str | None = None
    weights_sha256: str | None = None
    split: str | None = None
    quantize: str | None = None
    device: str | None = None
    precision: str = "fp32"
    backend: str = "eager"
    runtime: dict[str, Any] = field(default_factory=dict)  # the runner's description: backend, threads, set-up, gate
    tiling: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float | None = None
    command: str = ""
    res: str | None = None
    schema: int = SCHEMA
    metrics_sha256: str | None = None  # of metrics.csv as the run wrote it
    digest: str | None = None  # of every other field: a summary edited by hand no longer matches it

    @property
    def scores(self) -> dict[str, float | None]:
        return {k: getattr(self, k) for k in METRICS}


def _from_dict(cls: type, doc: Any, path: Path) -> Any:
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise HarnessError(f"{path}: not a harness {cls.__name__} of schema {SCHEMA} (found {found!r})")
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in doc.items() if k in names})
    except TypeError as exc:
        raise HarnessError(f"{path}: incomplete {cls.__name__} ({exc})") from None


class RunFolder:
    """The files of one run folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.res = self.root / "res"
        self.metrics_csv = self.root / "metrics.csv"
        self.summary_json = self.root / "summary.json"
        self.settings_json = self.root / "run.json"
        self.report_html = self.root / "report.html"

    def write_settings(self, settings: RunSettings) -> None:
        write_json(self.settings_json, asdict(settings))

    def read_settings(self) -> RunSettings | None:
        if not self.settings_json.is_file():
            return None
        return _from_dict(RunSettings, read_json(self.settings_json), self.settings_json)

    def write_summary(self, summary: RunSummary) -> None:
        """Write ``summary.json`` sealed: with the sha256 of ``metrics.csv`` as it stands and a digest of itself."""
        summary.metrics_sha256 = sha256_file(self.metrics_csv) if self.metrics_csv.is_file() else None
        summary.digest = summary_digest(summary)
        write_json(self.summary_json, asdict(summary))

    def read_summary(self) -> RunSummary:
        if not self.summary_json.is_file():
            raise HarnessError(f"{self.root}: no summary.json (is it a harness run folder?)")
        return _from_dict(RunSummary, read_json(self.summary_json), self.summary_json)

    def write_metrics(self, table: pd.DataFrame) -> None:
        write_csv(self.metrics_csv, table)

    def read_metrics(self) -> pd.DataFrame:
        if not self.metrics_csv.is_file():
            raise HarnessError(f"{self.root}: no metrics.csv (is it a harness run folder?)")
        return read_csv(self.metrics_csv)

    def sweep(self) -> None:
        """Remove temporary files left by an interrupted write (``.NAME.*.partial``) and trash of a cleared run."""
        for folder in (self.root, self.res):
            if folder.is_dir():
                for tmp in folder.glob(".*.partial"):
                    tmp.unlink(missing_ok=True)
        for trash in self.root.glob(".trash-*") if self.root.is_dir() else []:
            shutil.rmtree(trash, ignore_errors=True)

    def clear(self) -> None:
        """Empty the run (``--force``): summary first (the run is incomplete from then on), then outputs and metrics
        moved aside at once and deleted, so an interruption never leaves old and new outputs together."""
        self.summary_json.unlink(missing_ok=True)
        trash = self.root / f".trash-{os.getpid()}"
        for path in (self.res, self.metrics_csv, self.report_html):
            if path.exists():
                trash.mkdir(exist_ok=True)
                path.rename(trash / path.name)
        shutil.rmtree(trash, ignore_errors=True)

    def holds_outputs(self) -> bool:
        return self.metrics_csv.exists() or (self.res.is_dir() and any(self.res.iterdir()))

    def verified(self) -> RunSummary:
        """The summary of a complete and consistent run: summary, metrics rows and res/ files agree, and every
        output is the file its row recorded (sha256). Anything else is refused in one line."""
        if not self.summary_json.is_file():
            raise HarnessError(
                f"{self.root}: incomplete run (no summary.json): finish it with `harness evaluate` or start again"
            )
        summary = self.read_summary()
        self._verify_seal(summary)
        table = self.read_metrics()
        if "scene" not in table or sorted(map(str, table["scene"])) != sorted(summary.scenes):
            raise HarnessError(f"{self.root}: inconsistent run: metrics.csv and summary.json list different scenes")
        if summary.res is None:  # an evaluate run: its outputs are here
            self._verify_outputs(table, summary.scenes)
        self._verify_data(table, Path(summary.data))
        return summary

    def _verify_seal(self, summary: RunSummary) -> None:
        if summary.digest is None:
            raise HarnessError(
                f"{self.root}: summary.json has no digest (an older harness wrote it); rerun the command that made "
                "the run (evaluate reuses its outputs)"
            )
        if summary.digest != summary_digest(summary):
            raise HarnessError(f"{self.root}: summary.json was changed after the run wrote it; rerun the run")
        if summary.metrics_sha256 != sha256_file(self.metrics_csv):
            raise HarnessError(f"{self.root}: metrics.csv was changed after the run wrote it; rerun the run")

    def _verify_data(self, table: pd.DataFrame, data: Path) -> None:
        """The ground truth the rows were scored against is still the file in the data folder (when it is there)."""
        for row in table.to_dict("records") if "gt_sha256" in table else []:
            gt = data / f"{row['scene']}-gt.tif"
            if isinstance(row["gt_sha256"], str) and gt.is_file() and sha256_file(gt) != row["gt_sha256"]:
                raise HarnessError(
                    f"{self.root}: {gt} is not the ground truth its row was scored against (the data changed); "
                    "rerun the run with --force"
                )

    def _verify_outputs(self, table: pd.DataFrame, scenes: list[str]) -> None:
        present = sorted(p.name for p in self.res.glob("*")) if self.res.is_dir() else []
        if present != sorted(f"{s}-out.tif" for s in scenes):
            raise HarnessError(
                f"{self.root}: inconsistent run: res/ holds {len(present)} file(s) for {len(scenes)} scene(s)"
            )
        for row in table.to_dict("records"):
            expected = row.get("output_sha256")
            if not isinstance(expected, str) or sha256_file(self.res / f"{row['scene']}-out.tif") != expected:
                raise HarnessError(
                    f"{self.root}: inconsistent run: res/{row['scene']}-out.tif is not the output its row recorded"
                )

    def check_not_input(self, out: Path) -> None:
        """Refuse ``out`` as a path to write when it is part of this run as an input: the folder itself, its records,
        its outputs or its data."""
        summary = read_json(self.summary_json) if self.summary_json.is_file() else {}
        records = [self.settings_json, self.summary_json, self.metrics_csv, self.root / "train_log.csv"]
        folders = [self.res] + [Path(summary[k]) for k in ("res", "data") if isinstance(summary.get(k), str)]
        target = Path(out).resolve()
        hit = next((p for p in records if p.resolve() == target), None) or next(
            (d for d in folders if d.resolve() == target or d.resolve() in target.parents), None
        )
        if hit is not None or target == self.root.resolve():
            raise HarnessError(
                f"--out {out}: would overwrite {hit or self.root}, an input of this command; choose another path"
            )

    def scored_metrics(self) -> pd.DataFrame:
        """The rows with a PSNR (scenes with ground truth)."""
        return scored_rows(self.read_metrics())


def summary_digest(summary: RunSummary) -> str:
    """sha256 of a summary's fields but its digest, as canonical JSON."""
    fields = {k: v for k, v in asdict(summary).items() if k != "digest"}
    return hashlib.sha256(json.dumps(jsonable(fields), sort_keys=True).encode()).hexdigest()


def scored_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a metrics table with a PSNR (scenes with ground truth)."""
    return table.dropna(subset=["psnr"]) if "psnr" in table else table.iloc[0:0]


def table_fields(table: pd.DataFrame) -> dict[str, Any]:
    """The summary's fields that follow from the metrics rows alone: mean scores and the scenes, scored or not."""
    scored = scored_rows(table)
    return {
        **mean_scores(scored),
        "num_scenes": int(len(table)),
        "num_scored": int(len(scored)),
        "scenes": [str(s) for s in table["scene"]],
    }


def mean_scores(rows: pd.DataFrame) -> dict[str, Any]:
    """Dataset score: the mean of the per-image values, as the server (None when nothing was scored)."""
    if rows.empty or "psnr" not in rows:
        return {k: None for k in METRICS}
    return {k: float(rows[k].mean()) for k in METRICS}
