"""Real published entries of this challenge through `harness challenge run`, with seeded weights, beside a small
well-behaved model and four hostile ones, on every executor asked for; the boards must agree.

    python benchmarks/published_teams.py GIT_DIR[:TEAM] ... [--scenes 2] [--size 256x512] [--latency]
        [--hostile] [--runs local slurm:2] [--time-limit 240] [--memory-limit 8]

Each GIT_DIR is a fetched snapshot of a team's repository (for instance SimonLarsen/ntire2025_rawfusion_submission
and Levi202309/NTIRE-2025-Burst); its ``models/*.py`` and ``test_demo.py`` are copied out of git into a temporary
challenge folder, never into this project. Their checkpoints are large files the snapshots do not hold, so each
team gets seeded weights: a child process builds the model as its ``test_demo.py`` does, after
``torch.manual_seed(0)``, and saves its state dict into ``model_zoo/``. ``flowcnrdb_tiny`` joins as our own
submission, with the results zip of a run of it; ``--hostile`` adds four copies of it whose model file, on import,
connects to a server on 127.0.0.1, writes into the data folder, allocates without bound or sleeps forever.

Each ``--runs`` entry is ``EXECUTOR[:SCENE_SHARDS]`` (slurm needs ``scripts/slurm-local.sh``). Prints each run's
board (Markdown), the findings, whether every run gave the first one's board (ranks, scores, budgets, statuses,
verdicts), and whether anything outside the run folders changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from harness.archive import safe_extract
from harness.bench import cpu_isa, machine
from harness.io import read_json
from harness.submission import read_submission

SEEDED = """
import sys, torch
sys.path.insert(0, sys.argv[1])
module = __import__("models." + sys.argv[2], fromlist=[sys.argv[3]])
torch.manual_seed(0)
model = getattr(module, sys.argv[3])(*__import__("json").loads(sys.argv[4]), **__import__("json").loads(sys.argv[5]))
torch.save(model.state_dict(), sys.argv[6])
"""
HOSTILE = {
    "net": "import socket\nsocket.create_connection(('127.0.0.1', PORT), timeout=2).sendall(b'leak')\n",
    "write": "open(r'DATA/ESCAPED', 'w').write('written outside its folder')\n",
    "memory": "import torch\nhoard = [torch.ones(2**26) for _ in range(10**6)]\n",
    "sleep": "import time\ntime.sleep(10**6)\n",
}
COMPARED = ("rank", "team", "psnr", "ssim", "params", "fvcore_macs", "status", "within_limits")


def copy_team(git_dir: Path, root: Path) -> None:
    names = subprocess.run(
        ["git", "-C", str(git_dir), "ls-tree", "-r", "--name-only", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.split()
    for name in names:
        if (name.startswith("models/") and name.endswith(".py")) or name == "test_demo.py":
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(
                subprocess.run(
                    ["git", "-C", str(git_dir), "show", f"HEAD:{name}"], capture_output=True, check=True
                ).stdout
            )
    sub = read_submission(root)
    (root / "model_zoo").mkdir(exist_ok=True)
    module = sub.model_file.relative_to(root / "models").with_suffix("").as_posix().replace("/", ".")
    args = [str(root), module, sub.class_name, json.dumps(sub.args), json.dumps(sub.kwargs)]
    subprocess.run([sys.executable, "-c", SEEDED, *args, str(root / "model_zoo" / "seeded.pth")], check=True)


class Listener:
    """A server on 127.0.0.1 counting who connects (nobody should)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.sock.accept()[0].close()
                self.connections += 1
            except OSError:
                pass


def hostile_copies(tiny_zip: Path, subs: Path, data: Path, port: int) -> None:
    for name, code in HOSTILE.items():
        folder = subs / f"hostile_{name}"
        safe_extract(tiny_zip, folder, allowed_suffixes=None)
        model_file = read_submission(folder).model_file
        code = code.replace("PORT", str(port)).replace("DATA", str(data))
        lines = model_file.read_text().splitlines(keepends=True)
        after = max((i + 1 for i, line in enumerate(lines) if line.startswith("from __future__")), default=0)
        model_file.write_text("".join([*lines[:after], code, *lines[after:]]))  # run on import


def tree_digest(*folders: Path) -> str:
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(f"{path}\0".encode() + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def print_board(board: dict[str, Any], title: str) -> None:
    print(f"\n{title}\n")
    print(
        "| rank | team | status | PSNR (dB) | parameters | G MACs (fvcore, 768x1536) | within the limits | replay | job s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for t in board["teams"]:
        psnr = "-" if t.get("psnr") is None else f"{t['psnr']:.2f}"
        params = "-" if t.get("params") is None else f"{t['params']:,}"
        macs = "-" if t.get("fvcore_macs") is None else f"{t['fvcore_macs'] / 1e9:.1f}"
        verdict = (t.get("replay") or {}).get("verdict", "-")
        cells = [t["rank"] or "-", t["team"], t["status"], psnr, params, macs, t.get("within_limits"), verdict]
        print("| " + " | ".join(map(str, [*cells, t.get("job_seconds")])) + " |")


def compared(board: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(*(t.get(c) for c in COMPARED), (t.get("replay") or {}).get("verdict")) for t in board["teams"]]


def build(args: argparse.Namespace, root: Path, cli: list[str], port: int) -> tuple[Path, Path]:
    subs, data = root / "subs", root / "data"
    for spec in args.teams:
        git_dir, _, team = spec.partition(":")
        copy_team(Path(git_dir), subs / (team or Path(git_dir).resolve().parent.name))
    tiny = subs / "flowcnrdb_tiny.zip"
    subprocess.run([*cli, "package", "code", "submissions/flowcnrdb_tiny.toml", "--out", str(tiny)], check=True)
    synth = ["data", "synth", str(data), "--train-scenes", "0", "--val-scenes", str(args.scenes), "--size", args.size]
    subprocess.run([*cli, *synth], check=True, capture_output=True)
    evaluate = ["evaluate", "--model", f"submission:{tiny}", "--trust-code", "--data", str(data), "--split", "test"]
    subprocess.run([*cli, *evaluate, "--out", str(root / "tiny_run"), "--no-report"], check=True, capture_output=True)
    results = ["package", "results", str(root / "tiny_run"), "--out", str(subs / "flowcnrdb_tiny.results.zip")]
    subprocess.run([*cli, *results], check=True, capture_output=True)
    if args.hostile:
        hostile_copies(tiny, subs, data, port)
    return subs, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teams", nargs="+", help="GIT_DIR[:TEAM]")
    parser.add_argument("--scenes", type=int, default=2)
    parser.add_argument("--size", default="256x512")
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--hostile", action="store_true")
    parser.add_argument("--runs", nargs="+", default=["local"], help="EXECUTOR[:SCENE_SHARDS]")
    parser.add_argument("--time-limit", default="240")
    parser.add_argument("--memory-limit", default="8")
    parser.add_argument("--jobs", default="2")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="harness-published-"))
    cli = [sys.executable, "-m", "harness.cli"]
    listener = Listener()
    try:
        subs, data = build(args, root, cli, listener.port)
        before = tree_digest(subs, data)
        host = machine()
        print(
            f"{host['cpu']} ({cpu_isa()['isa']}), {host['cores']} cores; {args.scenes} synthetic scenes of {args.size}"
        )
        boards = []
        for run in args.runs:
            executor, _, shards = run.partition(":")
            out = root / f"out-{executor}-{shards or 1}"
            command = ["challenge", "run", "--submissions", str(subs), "--data", str(data), "--out", str(out)]
            command += ["--executor", executor, "--scene-shards", shards or "1", "--jobs", args.jobs]
            command += ["--time-limit", args.time_limit, "--memory-limit", args.memory_limit]
            subprocess.run([*cli, *command, *([] if args.latency else ["--no-latency"])], check=True)
            boards.append(read_json(out / "board.json"))
            print_board(boards[-1], f"--executor {executor} --scene-shards {shards or 1}")
        print()
        for t in boards[0]["teams"]:
            for line in [*(t.get("findings") or []), *([t["error"]] if t.get("error") else [])]:
                print(f"- {t['team']}: {line}")
        same = all(compared(b) == compared(boards[0]) for b in boards)
        print(f"\nthe same board from every run: {same}")
        untouched = tree_digest(subs, data) == before and not (data / "ESCAPED").exists()
        print(f"nothing outside the run folders changed: {untouched}; connections to 127.0.0.1: {listener.connections}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
