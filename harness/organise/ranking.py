"""Ranking teams: a rule is a small function from the teams' rows to scores; confidence by bootstrap over scenes.

A row is a team's dict with ``team``, ``psnr`` (mean over the scenes), ``per_scene`` (scene -> PSNR),
``params``, ``fvcore_macs``, the runtime ``seconds`` and ``within_limits``. A rule returns each eligible team's score
(higher is better); teams it leaves out are unranked, with the reason it gives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

Row = dict[str, Any]
Rule = Callable[[list[Row], dict[str, float]], tuple[dict[str, float], dict[str, str]]]


def psnr_rule(rows: list[Row], options: dict[str, float]) -> tuple[dict[str, float], dict[str, str]]:
    """This challenge's: mean test PSNR, among the teams within the parameter and FLOP limits."""
    scores, left_out = {}, {}
    for row in rows:
        if row.get("psnr") is None:
            left_out[row["team"]] = "no score"
        elif row.get("within_limits") is None:
            left_out[row["team"]] = "the limits are undecided (the official count failed; see its report)"
        elif not row["within_limits"]:
            left_out[row["team"]] = "outside the limits"
        else:
            scores[row["team"]] = float(row["psnr"])
    return scores, left_out


def esr_rule(rows: list[Row], options: dict[str, float]) -> tuple[dict[str, float], dict[str, str]]:
    """The Efficient SR series': 0.7 exp(2 T/T0) + 0.15 exp(2 F/F0) + 0.15 exp(2 P/P0) with runtime T, FLOPs F and
    parameters P against the baseline's (``baseline_seconds``, ``baseline_macs``, ``baseline_params``), among the
    teams at or above ``psnr_threshold``; lower is better, so the score is its negative."""
    scores, left_out = {}, {}
    for row in rows:
        needed = (row.get("psnr"), row.get("seconds"), row.get("fvcore_macs"), row.get("params"))
        if any(v is None for v in needed):
            left_out[row["team"]] = "incomplete (a score, runtime, FLOPs or parameters missing)"
        elif row["psnr"] < options["psnr_threshold"]:
            left_out[row["team"]] = f"PSNR below {options['psnr_threshold']:g} dB"
        else:
            cost = (
                0.7 * math.exp(2 * row["seconds"] / options["baseline_seconds"])
                + 0.15 * math.exp(2 * row["fvcore_macs"] / options["baseline_macs"])
                + 0.15 * math.exp(2 * row["params"] / options["baseline_params"])
            )
            scores[row["team"]] = -cost
    return scores, left_out


RULES: dict[str, Rule] = {"psnr": psnr_rule, "esr": esr_rule}


def bootstrap(rows: list[Row], ranked: list[str], resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """A 95 % interval of each team's mean PSNR over its scenes, and for each pair of neighbours on the board the
    share of resamples of the scenes (the same resample for every team) in which they swap places."""
    by_team = {r["team"]: r for r in rows}
    scenes = sorted(set.intersection(*(set(by_team[t]["per_scene"]) for t in ranked))) if ranked else []
    if not scenes:
        return {"intervals": {}, "swap": {}, "scenes": 0}
    table = np.array([[by_team[t]["per_scene"][s] for s in scenes] for t in ranked], dtype=np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(scenes), size=(resamples, len(scenes)))
    means = table[:, picks].mean(axis=2)  # teams x resamples
    intervals = {t: np.percentile(means[i], [2.5, 97.5]).tolist() for i, t in enumerate(ranked)}
    swap = {f"{a} / {b}": float(np.mean(means[i + 1] >= means[i])) for i, (a, b) in enumerate(zip(ranked, ranked[1:]))}
    return {"intervals": intervals, "swap": swap, "scenes": len(scenes)}


def rank(rows: list[Row], rule: str, options: dict[str, float] | None = None) -> list[Row]:
    """The board: every team's row with ``rank`` (None when unranked), ``note``, its interval and the chance that it
    and the team below it swap; ranked teams first, best first."""
    scores, left_out = RULES[rule](rows, options or {})
    ranked = sorted(scores, key=lambda t: -scores[t])
    by_team = {r["team"]: r for r in rows}
    confidence = bootstrap(rows, [t for t in ranked if by_team[t].get("per_scene")])
    board = []
    for position, team in enumerate(ranked):
        row = by_team[team]
        below = ranked[position + 1] if position + 1 < len(ranked) else None
        board.append(
            {
                **row,
                "rank": position + 1,
                "score": scores[team],
                "interval": confidence["intervals"].get(team),
                "swap_with_next": confidence["swap"].get(f"{team} / {below}") if below else None,
                "note": "",
            }
        )
    board += [{**r, "rank": None, "score": None, "note": left_out[r["team"]]} for r in rows if r["team"] in left_out]
    return board
