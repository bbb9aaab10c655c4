"""One run folder from evaluate runs of one model, with one set of settings, over disjoint scenes.

The merged folder is the folder a single run over all those scenes writes: the same outputs byte for byte, the same
metrics rows in the same order, the same scores and settings. What was measured stays a measurement: each row's
``seconds`` is its own part's, the runtime description is that of the part holding the first scene (where a single
run's equivalence gate would have run), the wall time is the parts' sum and the peak memory their largest.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError
from harness.io import atomic_folder
from harness.run import RunFolder, RunSettings, RunSummary, table_fields

# summary fields that the settings do not hold but that every part must share to be one run
MADE_ALIKE = ("data", "model", "parameters", "split", "device", "precision", "backend", "tiling", "versions")


def merge_runs(parts: Sequence[Path], out: Path) -> RunSummary:
    """Merge the complete, verified evaluate runs ``parts`` into the new run folder ``out`` (refused if it holds
    anything); nothing is written unless every part checks out."""
    if not parts:
        raise HarnessError("no runs to merge")
    verified = sorted(((RunFolder(p), RunFolder(p).verified()) for p in parts), key=lambda fs: sorted(fs[1].scenes))
    folders, summaries = [f for f, _ in verified], [s for _, s in verified]
    settings = [_settings_of(f, s) for f, s in zip(folders, summaries)]
    _check_alike(folders, summaries, settings)
    target = RunFolder(out)
    if target.root.exists() and (not target.root.is_dir() or any(target.root.iterdir())):
        raise HarnessError(f"{out}: not an empty folder; the merged run needs a new one")
    rows = [row for f in folders for row in f.read_metrics().to_dict("records")]
    table = pd.DataFrame(sorted(rows, key=lambda r: str(r["scene"])))
    first = summaries[0]
    summary = dataclasses.replace(
        first,
        **table_fields(table),
        timings={
            "wall_seconds": sum(s.timings.get("wall_seconds", 0.0) for s in summaries),
            "mean_seconds_per_scene": float(table["seconds"].mean()),
            "reused_scenes": sum(s.timings.get("reused_scenes", 0) for s in summaries),
            "merged_runs": len(folders),
        },
        peak_memory_mb=max((s.peak_memory_mb for s in summaries if s.peak_memory_mb is not None), default=None),
    )
    with atomic_folder(target.root) as tmp:
        staged = RunFolder(tmp)
        staged.res.mkdir()
        for folder, part in zip(folders, summaries):
            for scene in part.scenes:
                shutil.copyfile(folder.res / f"{scene}-out.tif", staged.res / f"{scene}-out.tif")
        staged.write_settings(settings[0])
        staged.write_metrics(table)
        staged.write_summary(summary)
    return target.read_summary()


def _settings_of(folder: RunFolder, summary: RunSummary) -> RunSettings:
    settings = folder.read_settings()
    if settings is None or summary.res is not None:
        raise HarnessError(f"{folder.root}: not an evaluate run (only runs that hold their outputs merge)")
    return settings


def _check_alike(folders: list[RunFolder], summaries: list[RunSummary], settings: list[RunSettings]) -> None:
    owner: dict[str, Path] = {}
    for folder, summary, setting in zip(folders, summaries, settings):
        differ = setting.changed(settings[0]) + [
            name for name in MADE_ALIKE if getattr(summary, name) != getattr(summaries[0], name)
        ]
        if differ:
            raise HarnessError(
                f"{folder.root}: not made like {folders[0].root} ({', '.join(differ)} differ); "
                "only runs of one model with one set of settings merge"
            )
        for scene in summary.scenes:
            if scene in owner:
                raise HarnessError(
                    f"{scene}: in both {owner[scene]} and {folder.root}; merged runs hold disjoint scenes"
                )
            owner[scene] = folder.root
