"""Every team's submission, run independently and resumably: lint, sandboxed run, replay, one row each.

``OUT/teams/TEAM/`` holds the team's extracted code (a zip), ``lint.json``, ``job.log``, its evaluate run and, last,
``row.json``: a team whose ``row.json`` carries the same key (the sha256 of its submission, the data and the
settings) is not run again, so an interrupted run continues where it stopped. With ``scene_shards`` above 1 a team's
test scenes are first evaluated in that many jobs (``shards/INDEX/``, each kept once finished with the same key), and
its job merges their runs into the one run folder a single job would have written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.archive import safe_extract
from harness.challenge import IMAGE_SIZE, MAC_LIMIT, PARAM_LIMIT
from harness.data import discover_scenes, select_scenes
from harness.errors import HarnessError
from harness.io import read_json, sha256_file, write_json
from harness.options import Split
from harness.organise.lint import lint
from harness.organise.replay import replay
from harness.organise.sandbox import Limits, Outcome, run_sandboxed, sandbox_problem
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
    executor: str = "local"  # local: subprocesses here; slurm: one job per team (and shard) through submitit
    scene_shards: int = 1  # jobs that share a team's scenes before its own job merges them


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


@dataclass(frozen=True)
class Team:
    """One entry to run: its name, code, results zip, the run's key and the submission's sha256."""

    name: str
    code: Path
    results: Path | None
    key: str
    code_digest: str

    def folder(self, cfg: ChallengeConfig) -> Path:
        return (cfg.out / "teams" / self.name).resolve()


def lint_team(team: Team, cfg: ChallengeConfig) -> tuple[dict[str, Any], Path | None]:
    """The team's row so far and its code as a folder, or (its finished row, None) when it cannot be run."""
    team_dir = team.folder(cfg)
    team_dir.mkdir(parents=True, exist_ok=True)
    (team_dir / "row.json").unlink(missing_ok=True)
    row: dict[str, Any] = {"team": team.name, "key": team.key, "submission_sha256": team.code_digest}
    row["sandbox"] = cfg.sandbox
    t0 = time.perf_counter()
    folder = None
    try:
        folder = _code_folder(team.code, team_dir)
        found = lint(folder)
    except HarnessError as exc:
        found = {"runnable": False, "findings": [str(exc)]}
    row["lint_seconds"] = round(time.perf_counter() - t0, 3)
    write_json(team_dir / "lint.json", found)
    row["findings"] = found["findings"]
    if folder is None or not found["runnable"]:
        return _finish(team_dir, {**row, "status": "not run (see the findings)"}), None
    return row, folder


def _sandboxed_job(
    folder: Path, job_dir: Path, extra: dict[str, Any], readable: list[Path], cfg: ChallengeConfig
) -> Outcome:
    """``harness.organise.job`` on the team's code in the sandbox, writing ``job_dir`` only (emptied first)."""
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir(parents=True)
    spec = {
        **{"submission": str(folder), "data": str(cfg.data), "out": str(job_dir)},
        **{"backend": cfg.backend, "device": cfg.device, "latency": cfg.latency},
        **extra,
    }
    return run_sandboxed(
        [sys.executable, "-m", "harness.organise.job", json.dumps(spec)],
        [folder, cfg.data, *readable],
        [job_dir],
        Limits(cfg.time_limit, cfg.memory_limit),
        job_dir.parent / f"{job_dir.name}.log",
        cfg.sandbox,
    )


def _error_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
    return next((line for line in reversed(lines) if line.startswith("error:")), lines[-1] if lines else "")


def run_shard(team: Team, folder: Path, index: int, scenes: list[int], cfg: ChallengeConfig) -> dict[str, Any]:
    """Shard ``index`` of a team's scenes, evaluated into ``shards/INDEX/job/run``; a shard finished with the same
    key and scenes is kept. Returns its status (and error line)."""
    shard_dir = team.folder(cfg) / "shards" / str(index)
    done = shard_dir / "done.json"
    wanted = {"key": team.key, "scenes": scenes}
    if done.is_file() and (kept := read_json(done)) and {k: kept.get(k) for k in wanted} == wanted:
        return {"status": "ok", "seconds": kept.get("seconds")}
    done.unlink(missing_ok=True)
    numbers = ",".join(map(str, scenes))
    outcome = _sandboxed_job(folder, shard_dir / "job", {"scenes": numbers}, [], cfg)
    if outcome.status != "ok":
        error = f"shard {index}: {_error_line(shard_dir / 'job.log')}"
        return {"status": outcome.status, "error": error, "log": f"shards/{index}/job.log"}
    write_json(done, {**wanted, "seconds": round(outcome.seconds, 2)})
    return {"status": "ok", "seconds": round(outcome.seconds, 2)}


def finish_team(
    team: Team, folder: Path, row: dict[str, Any], shards: list[dict[str, Any]], cfg: ChallengeConfig
) -> dict[str, Any]:
    """The team's job (merging its shards' runs where it had some), its replay and its row; every failure is this
    team's row, never an exception."""
    team_dir = team.folder(cfg)
    if shards:
        row["shard_seconds"] = [s.get("seconds") for s in shards]
        failed = next((s for s in shards if s["status"] != "ok"), None)
        if failed is not None:
            return _finish(team_dir, {**row, **{k: failed.get(k) for k in ("status", "error", "log")}})
    parts = [team_dir / "shards" / str(i) / "job" / "run" for i in range(len(shards))]
    extra = {"parts": [str(p) for p in parts]} if parts else {}
    outcome = _sandboxed_job(folder, team_dir / "job", extra, parts, cfg)
    row |= {"status": outcome.status, "job_seconds": round(outcome.seconds, 2), "log": "job.log"}
    run_dir = team_dir / "job"
    if outcome.status == "ok":
        row |= read_json(run_dir / "job.json")
    else:
        row["error"] = _error_line(team_dir / "job.log")
    if team.results is not None and outcome.status == "ok":
        try:
            row["replay"] = replay(team.results, run_dir / "run" / "res", cfg.data)
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
    write_json(cfg.out / "challenge.json", settings_record(cfg, data_digest))
    todo, rows = [], {}
    for name, (code, results) in teams.items():
        code_digest = _tree_digest(code)
        team = Team(name, code, results, _key(code_digest, results, data_digest, cfg), code_digest)
        done = team.folder(cfg) / "row.json"
        row = read_json(done) if done.is_file() else {}
        if row.get("key") == team.key:
            rows[name] = row
        else:
            todo.append(team)
    notify(progress, len(rows), len(teams), "teams")
    runnable = []
    for team in todo:
        row, folder = lint_team(team, cfg)
        if folder is None:
            rows[team.name] = row
            notify(progress, len(rows), len(teams), team.name)
        else:
            runnable.append((team, folder, row))
    shards = _run_shards(runnable, cfg)
    calls = [(team, folder, row, shards[team.name], cfg) for team, folder, row in runnable]
    for row in _map(finish_team, calls, cfg, _finish_failed):
        rows[row["team"]] = row
        notify(progress, len(rows), len(teams), row["team"])
    return [rows[t] for t in teams]


def settings_record(cfg: ChallengeConfig, data_digest: str) -> dict[str, Any]:
    """What the board says of the run: its settings, the data's sha256, the challenge's limits and the harness."""
    import harness

    return {
        **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "data_sha256": data_digest,
        "limits": {"parameters": PARAM_LIMIT, "fvcore_macs": MAC_LIMIT, "size": list(IMAGE_SIZE)},
        "harness": harness.__version__,
    }


def scene_shards(numbers: list[int], k: int) -> list[list[int]]:
    """``numbers`` in ``k`` contiguous shards of near-equal length (fewer when there are fewer scenes)."""
    k = max(1, min(k, len(numbers)))
    return [numbers[i * len(numbers) // k : (i + 1) * len(numbers) // k] for i in range(k)]


def _run_shards(runnable: list[tuple[Team, Path, dict[str, Any]]], cfg: ChallengeConfig) -> dict[str, list[Any]]:
    """Each runnable team's shard outcomes, in shard order (none without ``--scene-shards``)."""
    outcomes: dict[str, list[Any]] = {team.name: [] for team, _, _ in runnable}
    numbers = [s.number for s in select_scenes(discover_scenes(cfg.data), Split.test)]
    if cfg.scene_shards <= 1 or len(numbers) < 2:
        return outcomes
    calls = [
        (team, folder, i, chunk, cfg)
        for team, folder, _ in runnable
        for i, chunk in enumerate(scene_shards(numbers, cfg.scene_shards))
    ]
    for call, outcome in zip(calls, _map(run_shard, calls, cfg, _shard_failed)):
        outcomes[call[0].name].append(outcome)
    return outcomes


Call = tuple[Any, ...]  # one job's arguments
Job = Callable[..., dict[str, Any]]
OnFailure = Callable[[Call, Exception], dict[str, Any]]  # what a job that died (node, scheduler) stands for


def _finish_failed(call: Call, exc: Exception) -> dict[str, Any]:
    team, _, row = call[:3]
    return _finish(team.folder(call[-1]), {**row, "status": f"Slurm job failed: {exc}"})


def _shard_failed(call: Call, exc: Exception) -> dict[str, Any]:
    return {"status": "failed", "error": f"shard {call[2]}: Slurm job failed: {exc}"}


def _map(fn: Job, calls: list[Call], cfg: ChallengeConfig, failed: OnFailure) -> Iterator[dict[str, Any]]:
    """``fn(*call)`` for every call, in order: here (``cfg.jobs`` at a time) or as one Slurm job array."""
    if not calls:
        return
    if cfg.executor == "local":
        with ThreadPoolExecutor(max_workers=max(1, cfg.jobs)) as pool:
            yield from pool.map(lambda call: fn(*call), calls)
        return
    yield from _on_slurm(fn, calls, cfg, failed)


def _on_slurm(fn: Job, calls: list[Call], cfg: ChallengeConfig, failed: OnFailure) -> Iterator[dict[str, Any]]:
    """One Slurm job per call (a job array, ``cfg.jobs`` at a time), each writing into the shared run folder; the
    team's own limits inside, the job's a little above them."""
    try:
        import submitit
    except ModuleNotFoundError:
        raise HarnessError("--executor slurm needs submitit: pip install -e '.[cluster]'") from None
    executor = submitit.AutoExecutor(folder=cfg.out / "slurm" / "%j", cluster="slurm")
    executor.update_parameters(
        timeout_min=int(cfg.time_limit // 60) + 5,
        mem_gb=cfg.memory_limit + 2,
        cpus_per_task=1,
        slurm_array_parallelism=max(1, cfg.jobs),
        name="harness-challenge",
    )
    jobs = executor.map_array(fn, *(list(column) for column in zip(*calls)))
    for job, call in zip(jobs, calls):
        try:
            yield job.result()
        except Exception as exc:  # the job itself failed (node, scheduler): this call's outcome, not the run's end
            yield failed(call, exc)
