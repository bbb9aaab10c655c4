"""The organiser's side: teams' submissions run in sandboxes, replayed, ranked, on a board (harness challenge)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from clihelp import invoke, one_error
from same_run import assert_same_run
from selenium.webdriver.common.by import By
from team_code import toy_submission

from harness.organise.ranking import bootstrap, rank

HOSTILE = {
    "net": "import socket; socket.create_connection(('127.0.0.1', PORT), timeout=2).sendall(b'leak')",
    "write": "open(r'DATA/ESCAPED', 'w').write('written outside its folder')",
    "memory": "hoard = [torch.ones(2**26) for _ in range(10**6)]",
    "sleep": "import time; time.sleep(10**6)",
}


def results_zip(submission: Path, data: Path, out: Path, *extra: str) -> Path:
    run = out.parent.parent / "team_runs" / out.name.removesuffix(".results.zip")  # beside the submissions
    args = ["evaluate", "--model", f"submission:{submission}", "--trust-code", "--data", data, "--split", "test"]
    assert invoke(*args, "--out", run, "--no-report", *extra).exit_code == 0
    assert invoke("package", "results", run, "--out", out).exit_code == 0
    return out


class Listener:
    """A server on 127.0.0.1 that records whether anybody connected."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.open:
            try:
                self.sock.accept()[0].close()
                self.connections += 1
            except OSError:
                pass


@pytest.fixture(scope="module")
def challenge(tmp_path_factory, small_data) -> dict:
    root = tmp_path_factory.mktemp("challenge")
    subs = root / "submissions"
    subs.mkdir()
    listener = Listener()
    made = invoke("package", "code", "submissions/flowcnrdb_tiny.toml", "--out", subs / "tiny.zip")
    assert made.exit_code == 0, made.output
    results_zip(subs / "tiny.zip", small_data, subs / "tiny.results.zip")
    toy = toy_submission(subs / "toy", seed=1)
    results_zip(toy, small_data, subs / "toy.results.zip", "--quantize", "round")
    other = toy_submission(root / "elsewhere" / "other_weights", seed=2)
    toy_submission(subs / "toy_b", seed=1)
    results_zip(other, small_data, subs / "toy_b.results.zip")
    for name, code in HOSTILE.items():
        code = code.replace("PORT", str(listener.port)).replace("DATA", str(small_data))
        toy_submission(subs / f"hostile_{name}", seed=3, hostile=code)
    return {"root": root, "subs": subs, "data": small_data, "listener": listener}


def _args(ch: dict, out: Path, *extra: str) -> list[str]:
    args = ["challenge", "run", "--submissions", ch["subs"], "--data", ch["data"], "--out", out]
    return [*map(str, args), "--time-limit", "45", "--memory-limit", "3", "--jobs", "2", "--no-latency", *extra]


def _challenge(ch: dict, out: Path, *extra: str):
    return invoke(*_args(ch, out, *extra))


@pytest.fixture(scope="module")
def local_run(challenge) -> Path:
    out = challenge["root"] / "run"
    result = _challenge(challenge, out)
    assert result.exit_code == 0, result.output
    return out


def test_every_team_runs_in_its_sandbox_and_the_board_says_how_it_went(challenge, local_run, browser):
    out = local_run
    board = {t["team"]: t for t in json.loads((out / "board.json").read_text())["teams"]}
    assert board["tiny"]["rank"] == 1 and board["tiny"]["replay"]["verdict"] == "reproduced"
    assert board["toy"]["replay"]["verdict"] == "reproduced within 1 level"
    assert "rounding" in board["toy"]["replay"]["cause"]
    assert board["toy_b"]["replay"]["verdict"] == "not reproduced"
    assert board["toy"]["psnr"] == board["toy_b"]["psnr"] and board["toy"]["swap_with_next"] is not None
    assert board["tiny"]["replay"]["uploaded_psnr"] == board["tiny"]["psnr"]  # the upload scored as the server did
    assert board["toy"]["replay"]["uploaded_psnr"] != board["toy"]["psnr"]
    assert all(s["psnr_vs_rerun"] > 48 for s in board["toy"]["replay"]["scenes"])  # one level at most: >= 48.13 dB
    assert all(s["psnr_vs_rerun"] is None for s in board["tiny"]["replay"]["scenes"])
    net = board["hostile_net"]
    assert net["status"] == "failed" and ("ConnectionRefusedError" in net["error"] or "unreachable" in net["error"])
    assert "imports socket (network access" in " ".join(board["hostile_net"]["findings"])
    assert board["hostile_write"]["status"] == "failed" and "Read-only file system" in board["hostile_write"]["error"]
    assert "absolute path" in " ".join(board["hostile_write"]["findings"])
    assert board["hostile_memory"]["status"] == "exceeded memory"
    assert board["hostile_sleep"]["status"] == "timed out"
    assert all(board[f"hostile_{n}"]["rank"] is None for n in HOSTILE)
    assert challenge["listener"].connections == 0 and not (challenge["data"] / "ESCAPED").exists()
    assert {"elsewhere", "run", "submissions", "team_runs"} >= {p.name for p in challenge["root"].iterdir()} - {
        "slurm_run"
    }
    csv = pd.read_csv(out / "board.csv")
    assert list(csv["team"][:3]) == ["tiny", "toy", "toy_b"] or list(csv["team"][:3]) == ["tiny", "toy_b", "toy"]
    assert "tiny" in (out / "board.tex").read_text() and "\\begin{tabular}" in (out / "board.tex").read_text()
    browser.set_window_size(1400, 1000)
    browser.get((out / "board.html").as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "#board-table tbody tr")
    assert len(rows) == 7 and "not separable" in browser.find_element(By.ID, "board").text
    said = browser.find_element(By.ID, "settings").text
    assert "device cpu, backend eager, 45 s and 3 GB a job, in a bubblewrap sandbox" in said and "torch " in said
    assert "parameters < 30.0 M, fvcore MACs < 4.0 T at 768x1536" in said
    assert board["tiny"]["submission_sha256"][:12] in browser.find_element(By.ID, "details").text
    assert "Read-only file system" in browser.find_element(By.ID, "details").text  # the reason, linked from its row
    assert (
        browser.execute_script("const s = document.querySelector('.scroll'); return s.scrollWidth - s.clientWidth") <= 0
    )
    link = browser.find_element(By.CSS_SELECTOR, "#team-tiny a")
    assert link.get_attribute("href").endswith("teams/tiny/job/run/report.html")
    assert Path(link.get_attribute("href").removeprefix("file://")).is_file()
    assert browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth") <= 0
    logs = [a.get_attribute("href") for a in browser.find_elements(By.LINK_TEXT, "log")]
    assert len(logs) == 7 and all(Path(href.removeprefix("file://")).is_file() for href in logs)
    browser.set_window_size(1280, 2000)


def test_the_local_slurm_cluster_gives_the_same_board(challenge, local_run):
    out = challenge["root"] / "slurm_run"
    result = _challenge(challenge, out, "--executor", "slurm")
    assert result.exit_code == 0, result.output
    assert len(list((out / "slurm").iterdir())) >= 1  # the jobs' own folders: they ran on the cluster
    columns = ["rank", "team", "psnr", "ssim", "params", "fvcore_macs", "status"]
    assert pd.read_csv(out / "board.csv")[columns].equals(pd.read_csv(local_run / "board.csv")[columns])
    verdicts = lambda run: {
        t["team"]: (t["replay"] or {}).get("verdict") for t in json.loads((run / "board.json").read_text())["teams"]
    }
    assert verdicts(out) == verdicts(local_run)


def _linked(challenge: dict, folder: Path, *names: str) -> dict:
    """The challenge with only the named entries (and their results zips), linked into ``folder``."""
    folder.mkdir()
    for name in names:
        os.symlink(challenge["subs"] / name, folder / name)
        team = name.removesuffix(".zip")
        if (challenge["subs"] / f"{team}.results.zip").is_file():
            os.symlink(challenge["subs"] / f"{team}.results.zip", folder / f"{team}.results.zip")
    return {**challenge, "subs": folder}


@pytest.mark.parametrize("executor", ["local", "slurm"])
def test_scene_shards_merge_into_the_run_one_job_writes(challenge, local_run, tmp_path, executor):
    teams = ("tiny", "toy") if executor == "local" else ("tiny",)  # Slurm: the same calls through job arrays
    entries = ["tiny.zip", *teams[1:], *(["hostile_write"] if executor == "local" else [])]
    ch = _linked(challenge, tmp_path / "subs", *entries)
    out = tmp_path / "sharded"
    result = _challenge(ch, out, "--scene-shards", "3", "--executor", executor)
    assert result.exit_code == 0, result.output
    board, single = (
        {t["team"]: t for t in json.loads((run / "board.json").read_text())["teams"]} for run in (out, local_run)
    )
    for team in teams:
        shards = [json.loads((out / "teams" / team / "shards" / str(i) / "done.json").read_text()) for i in range(3)]
        assert [s["scenes"] for s in shards] == [[0, 1], [2, 3], [280, 281, 282]]
        merged, single_run = (run / "teams" / team / "job" / "run" for run in (out, local_run))
        assert_same_run(merged, single_run, moved=(out, local_run))
        for field in ("psnr", "ssim", "params", "fvcore_macs", "status", "within_limits"):
            assert board[team][field] == single[team][field], field
        assert board[team]["replay"]["verdict"] == single[team]["replay"]["verdict"]
        assert len(board[team]["shard_seconds"]) == 3
    assert board["tiny"]["rank"] == single["tiny"]["rank"] == 1
    if executor == "slurm":
        return
    failed = board["hostile_write"]  # its first shard failed: its reason and the shard's log
    assert failed["status"] == "failed" and failed["error"].startswith("shard 0: ") and "Read-only" in failed["error"]
    assert (out / "teams" / "hostile_write" / failed["log"]).is_file() and failed["log"] == "shards/0/job.log"
    logs = sorted((out / "teams" / "toy" / "shards").glob("*/job.log"))  # a team cut off after its shards:
    kept = [log.stat().st_mtime_ns for log in logs]  # they are kept, its own job runs again
    (out / "teams" / "toy" / "row.json").unlink()
    assert _challenge(ch, out, "--scene-shards", "3").exit_code == 0
    assert [log.stat().st_mtime_ns for log in logs] == kept and (out / "teams" / "toy" / "row.json").is_file()
    assert_same_run(
        out / "teams" / "toy" / "job" / "run", local_run / "teams" / "toy" / "job" / "run", (out, local_run)
    )


def test_an_interrupted_run_continues_and_gives_the_same_board(challenge, tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    for team in ("toy", "toy_b"):
        os.symlink(challenge["subs"] / team, subs / team)
        os.symlink(challenge["subs"] / f"{team}.results.zip", subs / f"{team}.results.zip")
    ch = {**challenge, "subs": subs}
    whole = tmp_path / "whole"
    assert _challenge(ch, whole).exit_code == 0
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *_args(ch, cut, "--jobs", "1")], start_new_session=True
    )
    first = cut / "teams" / "toy" / "row.json"
    while not first.is_file() and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9, half-way: toy done, toy_b not
    proc.wait()
    assert first.is_file() and not (cut / "teams" / "toy_b" / "row.json").is_file()
    kept = first.stat().st_mtime_ns
    assert invoke("challenge", "board", cut).exit_code == 0  # what has finished, the rest pending
    pending = {t["team"]: t for t in json.loads((cut / "board.json").read_text())["teams"]}
    assert pending["toy"]["status"] == "ok" and pending["toy"]["rank"] == 1 and pending["toy_b"]["status"] == "pending"
    assert "pending" in (cut / "board.html").read_text()
    assert _challenge(ch, cut).exit_code == 0
    assert first.stat().st_mtime_ns == kept  # the finished team was not run again
    columns = ["rank", "team", "psnr", "ssim", "params", "fvcore_macs", "status"]
    assert pd.read_csv(cut / "board.csv")[columns].equals(pd.read_csv(whole / "board.csv")[columns])


def test_without_a_sandbox_the_run_is_refused_unless_asked_and_the_board_says_so(challenge, tmp_path, monkeypatch):
    subs = tmp_path / "subs"
    subs.mkdir()
    os.symlink(challenge["subs"] / "toy", subs / "toy")
    monkeypatch.setenv("PATH", "/nonexistent")  # no bwrap to be found
    args = ["challenge", "run", "--submissions", subs, "--data", challenge["data"], "--out", tmp_path / "c"]
    line = one_error(invoke(*args, "--no-latency").output)
    assert "no sandbox can be made" in line and "--no-sandbox runs the teams' code without one" in line
    result = invoke(*args, "--no-latency", "--no-sandbox")  # the advice
    assert result.exit_code == 0, result.output
    team = json.loads((tmp_path / "c" / "board.json").read_text())["teams"][0]
    assert team["status"] == "ok" and team["sandbox"] is False


def test_latency_follows_the_bench_protocol(challenge, tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    os.symlink(challenge["subs"] / "toy", subs / "toy")
    args = ["challenge", "run", "--submissions", subs, "--data", challenge["data"], "--out", tmp_path / "c"]
    assert invoke(*args).exit_code == 0
    team = json.loads((tmp_path / "c" / "board.json").read_text())["teams"][0]
    assert team["latency"]["median_seconds"] > 0 and team["latency"]["iqr_seconds"] >= 0
    assert team["seconds"] == team["latency"]["median_seconds"]


def _row(team: str, psnr: list[float], **extra) -> dict:
    scenes = {f"Scene-{300 + i}": p for i, p in enumerate(psnr)}
    return {"team": team, "psnr": sum(psnr) / len(psnr), "per_scene": scenes, "within_limits": True, **extra}


def test_rules_rank_and_the_bootstrap_says_when_neighbours_are_not_separable():
    far = [_row("a", [40.0 + i % 3 for i in range(20)]), _row("b", [30.0 + i % 3 for i in range(20)])]
    assert bootstrap(far, ["a", "b"])["swap"] == {"a / b": 0.0}
    close = [_row("a", [30.0 + (i % 2) for i in range(20)]), _row("b", [30.0 + ((i + 1) % 2) for i in range(20)])]
    assert 0.3 < bootstrap(close, ["a", "b"])["swap"]["a / b"] < 0.7
    rows = [
        _row("fast", [30.0] * 4, seconds=1.0, fvcore_macs=1e9, params=1e5),
        _row("slow", [31.0] * 4, seconds=4.0, fvcore_macs=1e9, params=1e5),
        _row("weak", [20.0] * 4, seconds=0.5, fvcore_macs=1e9, params=1e5),
        _row("big", [35.0] * 4, within_limits=False),
        _row("uncounted", [36.0] * 4, within_limits=None),
    ]
    options = {"psnr_threshold": 25.0, "baseline_seconds": 2.0, "baseline_macs": 1e9, "baseline_params": 1e5}
    esr = {r["team"]: r for r in rank(rows, "esr", options)}
    assert esr["fast"]["rank"] == 1 and esr["slow"]["rank"] == 2 and esr["weak"]["rank"] is None
    assert "below 25" in esr["weak"]["note"]
    psnr = {r["team"]: r for r in rank(rows, "psnr")}
    assert psnr["slow"]["rank"] == 1 and psnr["big"]["rank"] is None and psnr["big"]["note"] == "outside the limits"
    assert psnr["uncounted"]["rank"] is None and "the limits are undecided" in psnr["uncounted"]["note"]
