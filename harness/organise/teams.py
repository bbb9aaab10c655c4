"""Every team's submission, run independently and resumably: lint, sandboxed run, replay, one row each.

``OUT/teams/TEAM/`` holds the team's extracted code (a zip), ``lint.json``, ``job.log``, its evaluate run and, last,
``row.json``: a team whose ``row.json`` carries the same key (the sha256 of its submission, the data and the
settings) is not run again, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.archive import safe_extract
from harness.errors import HarnessError
from harness.io import read_json, sha256_file, write_json
from harness.organise.lint import lint
from harness.organise.replay import replay
from harness.organise.sandbox import Limits, run_sandboxed, sandbox_problem
from harness.progress import Progress, notify

RESULTS_SUFFIX = ".results.zip"


@dataclass(frozen=True)
class ChallengeConfig:
    """Arguments of ``harness challenge run``; the defaults are the command's."""

    submissions: Path
    data: Path
    out: Path
    rule: str = "psnr"
    jobs: int = 1
    time_limit: float = 1800.0
    memory_limit: float = 16.0
    device: str = "cpu"
    backend: str = "eager"
    latency: bool = True
    sandbox: bool = True
    executor: str = "local"  # local: subprocesses here; slurm: one job per team through submitit


def entries(folder: Path) -> dict[str, tuple[Path, Path | None]]:
    """Team -> (its code submission, its results zip or None): every folder and zip, ``NAME.results.zip`` beside."""
    if not folder.is_dir():
        raise HarnessError(f"{folder}: no such folder of submissions")
    teams: dict[str, tuple[Path, Path | None]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name.endswith(RESULTS_SUFFIX):
            continue
        if path.is_dir() or path.suffix == ".zip":
            name = path.name.removesuffix(".zip")
            results = folder / f"{name}{RESULTS_SUFFIX}"
            teams[name] = (path, results if results.is_file() else None)
    if not teams:
        raise HarnessError(f"{folder}: holds no submission (a folder or a zip per team)")
    return teams


def _tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def _key(code_digest: str, results: Path | None, data_digest: str, cfg: ChallengeConfig) -> str:
    settings = {
        k: v
        for k, v in asdict(cfg).items()
        if k in ("time_limit", "memory_limit", "device", "backend", "latency", "sandbox")
    }
    parts = [
        code_digest,
        sha256_file(results) if results else "",
        data_digest,
        json.dumps(settings, sort_keys=True),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _code_folder(code: Path, team_dir: Path) -> Path:
    """The submission as a folder: a zip is extracted safely (nothing run) into the team's folder."""
    if code.is_dir():
        return code.resolve()
    target = team_dir / "code"
    shutil.rmtree(target, ignore_errors=True)
    safe_extract(code, target, allowed_suffixes=None)
    return target


def run_team(
    team: str, code: Path, results: Path | None, digests: tuple[str, str], cfg: ChallengeConfig
) -> dict[str, Any]:
    """One team, start to end (``digests``: the run's key and the submission's sha256); every failure is this
    team's row, never an exception."""
    team_dir = (cfg.out / "teams" / team).resolve()
    team_dir.mkdir(parents=True, exist_ok=True)
    (team_dir / "row.json").unlink(missing_ok=True)
    key, code_digest = digests
    row: dict[str, Any] = {"team": team, "key": key, "submission_sha256": code_digest, "sandbox": cfg.sandbox}
    t0 = time.perf_counter()
    try:
        folder = _code_folder(code, team_dir)
        found = lint(folder)
    except HarnessError as exc:
        found = {"runnable": False, "findings": [str(exc)]}
    row["lint_seconds"] = round(time.perf_counter() - t0, 3)
    write_json(team_dir / "lint.json", found)
    row["findings"] = found["findings"]
    if not found["runnable"]:
        return _finish(team_dir, {**row, "status": "not run (see the findings)"})
    run_dir = team_dir / "job"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    spec: dict[str, Any] = {
        "submission": str(folder),
        "data": str(cfg.data),
        "out": str(run_dir),
        "backend": cfg.backend,
    }
    spec |= {"device": cfg.device, "latency": cfg.latency}
    outcome = run_sandboxed(
        [sys.executable, "-m", "harness.organise.job", json.dumps(spec)],
        [folder, cfg.data],
        [run_dir],
        Limits(cfg.time_limit, cfg.memory_limit),
        team_dir / "job.log",
        cfg.sandbox,
    )
    row |= {"status": outcome.status, "job_seconds": round(outcome.seconds, 2)}
    if outcome.status == "ok":
        row |= read_json(run_dir / "job.json")
    else:
        lines = (team_dir / "job.log").read_text(errors="replace").strip().splitlines()
        row["error"] = next((line for line in reversed(lines) if line.startswith("error:")), lines[-1] if lines else "")
    if results is not None and outcome.status == "ok":
        try:
            row["replay"] = replay(results, run_dir / "run" / "res")
        except HarnessError as exc:
            row["replay"] = {"verdict": "not reproduced", "cause": str(exc), "scenes": []}
    return _finish(team_dir, row)


def _finish(team_dir: Path, row: dict[str, Any]) -> dict[str, Any]:
    official = (row.get("verdicts") or {}).get("official") or {}
    row["within_limits"] = official.get("pass")  # None: undecided (a counter failed, or it did not run)
    write_json(team_dir / "row.json", row)  # last: a team is complete once this exists
    return row


def run_teams(cfg: ChallengeConfig, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Every team's row: those complete with the same key are kept, the others run (``cfg.jobs`` at a time)."""
    if cfg.executor not in ("local", "slurm"):
        raise HarnessError(f"--executor must be local or slurm, not {cfg.executor!r}")
    cfg = dataclasses.replace(
        cfg, submissions=cfg.submissions.resolve(), data=cfg.data.resolve(), out=cfg.out.resolve()
    )
    if cfg.sandbox and (problem := sandbox_problem()):
        raise HarnessError(f"no sandbox can be made: {problem}; --no-sandbox runs the teams' code without one")
    teams = entries(cfg.submissions)
    data_digest = _tree_digest(cfg.data)
    todo, rows = [], {}
    for team, (code, results) in teams.items():
        code_digest = _tree_digest(code)
        key = _key(code_digest, results, data_digest, cfg)
        done = cfg.out / "teams" / team / "row.json"
        row = read_json(done) if done.is_file() else {}
        if row.get("key") == key:
            rows[team] = row
        else:
            todo.append((team, code, results, (key, code_digest)))
    notify(progress, len(rows), len(teams), "teams")
    for row in (_on_slurm if cfg.executor == "slurm" else _here)(todo, cfg):
        rows[row["team"]] = row
        notify(progress, len(rows), len(teams), row["team"])
    return [rows[t] for t in teams]


Todo = list[tuple[str, Path, Path | None, tuple[str, str]]]


def _here(todo: Todo, cfg: ChallengeConfig) -> Iterator[dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=max(1, cfg.jobs)) as pool:
        yield from pool.map(lambda t: run_team(t[0], t[1], t[2], t[3], cfg), todo)


def _on_slurm(todo: Todo, cfg: ChallengeConfig) -> Iterator[dict[str, Any]]:
    """One Slurm job per team (a job array, ``cfg.jobs`` at a time), each writing its row into the shared run folder;
    the team's own limits inside, the job's a little above them."""
    try:
        import submitit
    except ModuleNotFoundError:
        raise HarnessError("--executor slurm needs submitit: pip install -e '.[cluster]'") from None
    if not todo:
        return
    executor = submitit.AutoExecutor(folder=cfg.out / "slurm" / "%j", cluster="slurm")
    executor.update_parameters(
        timeout_min=int(cfg.time_limit // 60) + 5,
        mem_gb=cfg.memory_limit + 2,
        cpus_per_task=1,
        slurm_array_parallelism=max(1, cfg.jobs),
        name="harness-challenge",
    )
    teams, codes, results, digests = (list(column) for column in zip(*todo))
    jobs = executor.map_array(run_team, teams, codes, results, digests, [cfg] * len(todo))
    for job, team in zip(jobs, teams):
        try:
            yield job.result()
        except Exception as exc:  # the job itself failed (node, scheduler): this team's row, not the run's end
            yield _finish((cfg.out / "teams" / team).resolve(), {"team": team, "status": f"Slurm job failed: {exc}"})
