"""Self-contained HTML reports: one file, inline CSS/JS, images as data URIs, no network."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from harness.challenge import IMAGE_SIZE, REFERENCE_PSNR
from harness.data import discover_scenes
from harness.data.scenes import Scene, reference_rgb
from harness.errors import HarnessError
from harness.io import atomic_write_text, read_csv, read_gt, read_json, read_output
from harness.metrics import quantize_gt
from harness.options import COUNTERS
from harness.organise.ranking import bootstrap
from harness.progress import Progress
from harness.report.images import (
    CROP,
    box_argmax,
    compare_panels,
    crop,
    heatmap,
    png_uri,
    preview,
    thumbnails,
    webp_uri,
)
from harness.run import RunFolder, RunSummary
from harness.tables import fmt

TEMPLATES = Path(__file__).parent / "templates"
REFERENCES = list(REFERENCE_PSNR)
COMPARE_SCENES = 3  # scenes shown in detail on the compare page: those whose PSNR differs most between runs


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, autoescape=True)
    return env


def png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plots(table: pd.DataFrame, summary: RunSummary, brightness: dict[str, float]) -> dict[str, str]:
    plots: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.bar(table["scene"].str.replace("Scene-", ""), table["psnr"], color="#4a7ab5")
    if summary.psnr is not None:
        ax.axhline(summary.psnr, color="k", lw=1, ls="--", label=f"mean {summary.psnr:.2f} dB")
    ax.set_ylabel("PSNR (dB)")
    ax.set_xlabel("scene")
    ax.legend()
    ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    plots["per_scene"] = png(fig)
    fig, ax = plt.subplots(figsize=(5, 2.8))
    ax.hist(table["psnr"], bins=min(20, max(3, len(table))), color="#4a7ab5", edgecolor="white", linewidth=0.8)
    ax.set_xlabel("PSNR (dB)")
    ax.set_ylabel("scenes")
    plots["distribution"] = png(fig)
    fig, ax = plt.subplots(figsize=(5, 2.8))
    xs = [brightness.get(s, np.nan) for s in table["scene"]]
    ax.scatter(xs, table["psnr"], color="#b5574a")
    ax.set_xlabel("mean ground-truth brightness (linear)")
    ax.set_ylabel("PSNR (dB)")
    plots["brightness"] = png(fig)
    fig, ax = plt.subplots(figsize=(6, 2.6))
    names = ["this run"] + [n for n, _ in REFERENCES]
    values = [float("nan") if summary.psnr is None else summary.psnr] + [v for _, v in REFERENCES]
    ax.barh(names, values, color=["#b5574a"] + ["#999"] * len(REFERENCES))
    ax.set_xlabel("PSNR (dB)")
    ax.invert_yaxis()
    plots["references"] = png(fig)
    return plots


def _training_plot(log: pd.DataFrame) -> str:
    fig, axes = plt.subplots(1, 3, figsize=(12, 2.8))
    axes[0].plot(log["iteration"], log["loss"])
    axes[0].set_yscale("log")
    axes[0].set_title("loss (MSE)")
    axes[1].plot(log["iteration"], log["lr"])
    axes[1].set_title("learning rate")
    val = log.dropna(subset=["val_psnr"])
    axes[2].plot(val["iteration"], val["val_psnr"], marker="o", label="PSNR")
    axes[2].set_title("validation PSNR (dB)")
    twin = axes[2].twinx()
    twin.plot(val["iteration"], val["val_ssim"], color="#b5574a", marker=".", label="SSIM")
    twin.set_ylabel("SSIM")
    for ax in axes:
        ax.set_xlabel("iteration")
    return png(fig)


def _visual(label: str, scene_id: str, psnr: float | None, res: Path, scene: Scene | None) -> dict[str, Any]:
    out = read_output(res / f"{scene_id}-out.tif")
    panels: list[tuple[str, np.ndarray]] = []
    reference = reference_rgb(scene) if scene is not None else None
    if reference is not None:
        panels.append(("reference frame 0 (bilinearly demosaicked preview)", preview(reference)))
    panels.append(("output", out))
    if scene is not None and scene.gt is not None:
        gt = quantize_gt(read_gt(scene.gt))
        err = np.abs(out.astype(np.float64) - gt).mean(axis=-1)
        panels += [("ground truth (8-bit)", gt), ("absolute error (mean over RGB)", heatmap(err))]
        y0, x0 = box_argmax(err)
    else:
        y0, x0 = max(0, (out.shape[0] - CROP) // 2), max(0, (out.shape[1] - CROP) // 2)
    images = [{"caption": caption, "src": webp_uri(img)} for caption, img in panels]
    crops = [{"caption": caption.split(" (")[0], "src": png_uri(crop(img, y0, x0))} for caption, img in panels]
    return {"label": label, "scene": scene_id, "psnr": psnr, "images": images, "crops": crops, "at": (y0, x0)}


def _given_budget(summary: RunSummary, path: Path) -> dict[str, Any]:
    """A `harness budget --json` document, refused unless it is one, of this run's model and configuration."""
    doc = read_json(path)
    if not isinstance(doc, dict) or not {"params", "input", "counters", "verdicts"} <= set(doc):
        raise HarnessError(f"{path}: not a `harness budget --json` document")
    source = doc.get("source") or {}
    if source.get("spec") != summary.model or doc["params"] != summary.parameters:
        raise HarnessError(
            f"{path}: a budget of {source.get('spec', '?')} ({doc['params']:,} parameters), "
            f"not of this run's {summary.model} ({summary.parameters or 0:,} parameters)"
        )
    if summary.source.get("args", {}) != source.get("args", {}) and summary.source.get("kind") != "registered":
        raise HarnessError(f"{path}: a budget of {source.get('spec')} with other arguments ({source.get('args')})")
    return doc


def _budget(
    summary: RunSummary, budget_path: Path | None, compute: bool, progress: Progress | None, trust_code: bool = False
) -> tuple[dict[str, Any] | None, str]:
    if budget_path is not None:
        return _given_budget(summary, budget_path), ""
    if summary.model is None:
        return None, ""  # a scored folder of outputs: no model to count
    if not compute:
        return None, "budget not computed (--no-budget); `harness report RUN` computes it once and caches it"
    kind = summary.source.get("kind", "registered")
    if kind == "submission" and not trust_code:
        return None, "budget not computed: the model is a code submission; `harness report RUN --trust-code` counts it"
    from harness.budget.budget import cached_budget
    from harness.options import REPORT_COUNTERS
    from harness.sources import resolve_model

    try:
        args = summary.model_config if kind == "registered" else summary.source.get("args", {})
        model, source = resolve_model(summary.model, args, trust_code)
        return cached_budget(model.eval(), source, IMAGE_SIZE, list(REPORT_COUNTERS), progress), ""
    except HarnessError as exc:
        return None, f"budget not computed: {exc}"


def source_text(source: dict[str, Any]) -> str:
    """One line describing a model source (see harness.sources.ModelSource)."""
    if not source:
        return "-"
    parts = [f"{source['kind']} {source['spec']}"]
    if source.get("file"):
        parts.append(f"file {source['file']} (sha256 {source.get('sha256')})")
    if source.get("args"):
        parts.append(f"arguments {json.dumps(source['args'])}")
    return "; ".join(parts)


def _picks(table: pd.DataFrame, scenes: dict[str, Scene], res: Path) -> list[dict[str, Any]]:
    """Best, median and worst scene with their images; without scores, the first, middle and last output."""
    if "psnr" in table and table["psnr"].notna().any():
        order = table.dropna(subset=["psnr"]).sort_values("psnr", kind="stable").reset_index(drop=True)
        labels = ("best", "median", "worst")
    else:  # no scores: the first, middle and last scene
        order, labels = table.iloc[::-1].reset_index(drop=True), ("first", "middle", "last")
    picks = [(labels[0], order.iloc[-1]), (labels[1], order.iloc[len(order) // 2]), (labels[2], order.iloc[0])]
    seen: set[str] = set()
    out = []
    for label, r in picks:
        if str(r["scene"]) not in seen:
            seen.add(str(r["scene"]))
            psnr = float(r["psnr"]) if "psnr" in r and r["psnr"] == r["psnr"] else None
            out.append(_visual(label, str(r["scene"]), psnr, res, scenes.get(str(r["scene"]))))
    return out


def render_run_report(
    run_dir: Path,
    budget_path: Path | None = None,
    out: Path | None = None,
    budget: bool = True,
    progress: Progress | None = None,
    trust_code: bool = False,
) -> Path:
    """Write the report of a run folder (evaluate or score, with or without ground truth); returns its path."""
    folder = RunFolder(Path(run_dir))
    if out is not None:
        folder.check_not_input(out)
    summary = folder.verified()
    table = folder.read_metrics()
    scored = folder.scored_metrics()
    data = Path(summary.data)
    scenes = {s.id: s for s in discover_scenes(data)} if data.is_dir() else {}
    brightness = {
        sid: float(read_gt(s.gt).mean())
        for sid, s in scenes.items()
        if s.gt is not None and sid in set(scored["scene"])
    }
    plots = _plots(scored, summary, brightness) if not scored.empty else {}
    log_path = folder.root / "train_log.csv"
    plots["training"] = _training_plot(read_csv(log_path)) if log_path.is_file() else ""
    budget_doc, budget_note = _budget(summary, budget_path, budget, progress, trust_code)
    columns = [c for c in ("scene", "psnr", "ssim", "ssim_standard", "seconds") if c in table.columns]
    res = Path(summary.res) if summary.res else folder.res
    html = (
        _env()
        .get_template("run.html.j2")
        .render(
            s=summary,
            source=source_text(summary.source),
            config=json.dumps(summary.model_config),
            versions=", ".join(f"{k} {v}" for k, v in summary.versions.items()),
            date=_now(),
            references=REFERENCES,
            plots=plots,
            budget=budget_doc,
            budget_note=budget_note,
            rec_names=[n for n in (budget_doc or {}).get("counters", {}) if n != "analytic"],
            left_out=[n for n in COUNTERS if n not in (budget_doc or {}).get("counters", {})],
            columns=columns,
            rows=table[columns].to_dict("records"),
            visuals=_picks(table, scenes, res),
            fmt=fmt,
            crop=CROP,
            cell=fmt,
        )
    )
    return atomic_write_text(out or folder.report_html, html)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def compare_runs(
    run_dirs: list[Path], budget: bool = True, trust_code: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """Runs compared on the scenes they share: each run's means, parameters, FLOPs (fvcore, at the challenge size;
    with ``budget``, computed once and cached) and runtime per scene, best mean PSNR first; and every shared scene's
    scores. Deltas, wins and losses are against the first run given (the baseline)."""
    if len(run_dirs) < 2:
        raise HarnessError("compare needs at least two run folders")
    folders = [RunFolder(Path(d)) for d in run_dirs]
    summaries = [f.verified() for f in folders]
    tables = [f.scored_metrics().set_index("scene") for f in folders]
    shared = _shared_scenes(run_dirs, tables)
    labels = _labels(run_dirs)
    base = tables[0].loc[shared, "psnr"]
    runs: list[dict[str, Any]] = []
    for label, summary, t, folder in zip(labels, summaries, tables, folders):
        delta = t.loc[shared, "psnr"] - base
        doc, _ = _budget(summary, None, budget, progress, trust_code)
        fvcore = (doc or {}).get("counters", {}).get("fvcore", {})
        runs.append(
            {
                "label": label,
                "run": str(folder.root.resolve()),
                "model": summary.model or "outputs only",
                "psnr": float(t.loc[shared, "psnr"].mean()),
                "ssim": float(t.loc[shared, "ssim"].mean()),
                "parameters": summary.parameters,
                "fvcore_gmacs": fvcore["macs"] / 1e9 if "macs" in fvcore else None,
                "seconds_per_scene": float(t.loc[shared, "seconds"].mean()) if "seconds" in t else None,
                "delta": float(delta.mean()),
                "wins": int((delta > 0).sum()),
                "losses": int((delta < 0).sum()),
                "ties": int((delta == 0).sum()),
            }
        )
    order = sorted(range(len(runs)), key=lambda i: -runs[i]["psnr"])
    confidence = bootstrap(
        [{"team": labels[i], "per_scene": dict(tables[i].loc[shared, "psnr"])} for i in order],
        [labels[i] for i in order],
    )
    for position, i in enumerate(order):
        below = labels[order[position + 1]] if position + 1 < len(order) else None
        runs[i]["interval"] = confidence["intervals"].get(labels[i])
        runs[i]["swap_with_next"] = confidence["swap"].get(f"{labels[i]} / {below}") if below else None
    return {
        "baseline": labels[0],
        "shared": shared,
        "counts": [len(t) for t in tables],
        "runs": [{"rank": r + 1, **runs[i]} for r, i in enumerate(order)],
        "scenes": _scene_rows(labels, tables, shared, order),
    }


def _scene_rows(
    labels: list[str], tables: list[pd.DataFrame], shared: list[str], order: list[int]
) -> list[dict[str, Any]]:
    """One row per shared scene: every run's PSNR and SSIM, and each later run's PSNR delta to the first, ranked."""
    rows = []
    for scene in shared:
        row: dict[str, Any] = {"scene": scene}
        for i in order:
            row[f"PSNR {labels[i]}"] = float(tables[i].loc[scene, "psnr"])
        for i in order:
            row[f"SSIM {labels[i]}"] = float(tables[i].loc[scene, "ssim"])
        for i in (i for i in order if i):
            row[f"ΔPSNR {labels[i]}"] = row[f"PSNR {labels[i]}"] - row[f"PSNR {labels[0]}"]
        rows.append(row)
    return rows


def render_compare(
    run_dirs: list[Path], out: Path, budget: bool = True, trust_code: bool = False, progress: Progress | None = None
) -> tuple[Path, dict[str, Any]]:
    """The comparison of :func:`compare_runs` as a self-contained HTML page at ``out``; returns it and the document."""
    folders = [RunFolder(Path(d)) for d in run_dirs]
    for folder in folders:
        folder.check_not_input(out)
    doc = compare_runs(run_dirs, budget, trust_code, progress)
    summaries = [f.read_summary() for f in folders]
    labels = _labels(run_dirs)
    shared = doc["shared"]
    psnr = {r["label"]: {s["scene"]: s[f"PSNR {r['label']}"] for s in doc["scenes"]} for r in doc["runs"]}
    fig, ax = plt.subplots(figsize=(7, 3))
    ranked = [r["label"] for r in doc["runs"]]
    for scene in shared:
        ax.plot(range(len(ranked)), [psnr[lb][scene] for lb in ranked], color="#999", lw=0.8, marker="o", ms=3)
    ax.set_xticks(range(len(ranked)), ranked)
    ax.set_ylabel("PSNR (dB)")
    res_dirs = [Path(sm.res) if sm.res else f.res for sm, f in zip(summaries, folders)]
    data = Path(summaries[0].data)
    scenes = {sc.id: sc for sc in discover_scenes(data)} if data.is_dir() else {}
    spread = {sc: max(abs(psnr[lb][sc] - psnr[labels[0]][sc]) for lb in labels[1:]) for sc in shared}
    differ = [sc for sc in sorted(shared, key=lambda sc: -spread[sc])[:COMPARE_SCENES] if sc in scenes]
    html = (
        _env()
        .get_template("compare.html.j2")
        .render(
            doc=doc,
            runs=doc["runs"],
            shared=shared,
            columns=list(doc["scenes"][0]),
            rows=doc["scenes"],
            plot=png(fig),
            cell=fmt,
            date=_now(),
            visuals=[compare_panels(scenes[sc], sc, labels, res_dirs) for sc in differ],
            thumbs=[thumbnails(sc, labels, res_dirs) for sc in shared],
        )
    )
    return atomic_write_text(out, html), doc


def _shared_scenes(run_dirs: list[Path], tables: list[pd.DataFrame]) -> list[str]:
    """The scored scenes every run has, refused unless their ground truth is the same file in every run."""
    for d, t in zip(run_dirs, tables):
        if t.empty:
            raise HarnessError(f"{d}: no ground truth, so no scores to compare (its scenes have none)")
    shared = sorted(set.intersection(*(set(t.index) for t in tables)))
    if not shared:
        raise HarnessError("the runs share no scored scene")
    for scene in shared:
        digests = {t.loc[scene, "gt_sha256"] if "gt_sha256" in t else None for t in tables}
        if None in digests or len(digests) > 1:
            raise HarnessError(
                f"{scene}: the runs scored it against different ground truth (other data?); nothing to compare"
            )
    return shared


def _labels(run_dirs: list[Path]) -> list[str]:
    names = [d.resolve().name for d in run_dirs]
    return names if len(set(names)) == len(names) else [f"{i + 1}:{n}" for i, n in enumerate(names)]
