"""The leaderboard of a challenge run folder: ``board.json``, ``board.csv``, a self-contained ``board.html`` and the
challenge report's ``board.tex``, from whatever teams have finished (the others marked pending)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined

import harness
from harness.errors import HarnessError
from harness.io import atomic_write_text, read_json, write_csv, write_json
from harness.organise.ranking import rank

COLUMNS = ("rank", "team", "psnr", "ssim", "params", "fvcore_macs", "seconds", "status")
FIELDS = (
    *COLUMNS,
    *("error", "replay", "uncounted", "interval", "swap_with_next", "note", "sandbox", "findings"),
    *("submission_sha256", "device", "backend", "versions", "shard_seconds", "log"),
)


def _rows(out: Path) -> list[dict[str, Any]]:
    teams = sorted(p for p in (out / "teams").iterdir() if p.is_dir()) if (out / "teams").is_dir() else []
    if not teams:
        raise HarnessError(f"{out}: no teams (is it a `harness challenge run` folder?)")
    rows = []
    for folder in teams:
        done = folder / "row.json"
        row: dict[str, Any] = (
            read_json(done) if done.is_file() else {"team": folder.name, "status": "pending", "findings": []}
        )
        latency = (row.get("latency") or {}).get("median_seconds")
        row = {**dict.fromkeys(FIELDS), **row, "findings": row.get("findings") or []}
        rows.append({**row, "seconds": latency if latency is not None else row.get("seconds_per_scene")})
    return rows


def _tex(board: list[dict[str, Any]]) -> str:
    lines = [
        "\\begin{tabular}{rlrrrrr}",
        "\\hline",
        "Rank & Team & PSNR (dB) & SSIM & Params (M) & FLOPs (T) & Runtime (s) \\\\",
        "\\hline",
    ]
    for r in board:
        cells = [
            str(r["rank"]) if r.get("rank") else "--",
            str(r["team"]).replace("_", "\\_"),
            f"{r['psnr']:.2f}" if r.get("psnr") is not None else "--",
            f"{r['ssim']:.4f}" if r.get("ssim") is not None else "--",
            f"{r['params'] / 1e6:.2f}" if r.get("params") is not None else "--",
            f"{r['fvcore_macs'] / 1e12:.3f}" if r.get("fvcore_macs") is not None else "--",
            f"{r['seconds']:.2f}" if r.get("seconds") is not None else "--",
        ]
        lines.append(" & ".join(cells) + " \\\\")
    return "\n".join([*lines, "\\hline", "\\end{tabular}", ""])


def write_board(out: Path, rule: str = "psnr", options: dict[str, float] | None = None) -> dict[str, Any]:
    """Rank the teams of the run folder ``out`` and write the board files; returns the board document."""
    board = rank(_rows(out), rule, options)
    doc = {
        "rule": rule,
        "options": options or {},
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "harness": harness.__version__,
        "settings": read_json(out / "challenge.json") if (out / "challenge.json").is_file() else None,
        "versions": next((r["versions"] for r in board if r.get("versions")), None),
        "teams": board,
    }
    write_json(out / "board.json", doc)
    write_csv(out / "board.csv", pd.DataFrame([{c: r.get(c) for c in COLUMNS} for r in board]))
    atomic_write_text(out / "board.tex", _tex(board))
    env = Environment(loader=PackageLoader("harness.report", "templates"), autoescape=True, undefined=StrictUndefined)
    html = env.get_template("board.html.j2").render(doc=doc, teams=board)
    atomic_write_text(out / "board.html", html)
    return doc
