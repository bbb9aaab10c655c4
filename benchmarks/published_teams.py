"""Real published entries of this challenge through `harness challenge run`, with seeded weights.

    python benchmarks/published_teams.py GIT_DIR[:TEAM] ... [--scenes 3] [--size 256x512] [--latency]

Each GIT_DIR is a fetched snapshot of a team's repository (for instance SimonLarsen/ntire2025_rawfusion_submission
and Levi202309/NTIRE-2025-Burst); its ``models/*.py`` and ``test_demo.py`` are copied out of git into a temporary
challenge folder, never into this project. Their checkpoints are large files the snapshots do not hold, so each
team gets seeded weights: a child process builds the model as its ``test_demo.py`` does, after
``torch.manual_seed(0)``, and saves its state dict into ``model_zoo/``. ``flowcnrdb_tiny`` joins as our own
submission. Prints the board (Markdown) and each team's findings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teams", nargs="+", help="GIT_DIR[:TEAM]")
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--size", default="256x512")
    parser.add_argument("--latency", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="harness-published-"))
    cli = [sys.executable, "-m", "harness.cli"]
    try:
        subs = root / "subs"
        for spec in args.teams:
            git_dir, _, team = spec.partition(":")
            copy_team(Path(git_dir), subs / (team or Path(git_dir).resolve().parent.name))
        subprocess.run(
            [*cli, "package", "code", "submissions/flowcnrdb_tiny.toml", "--out", str(subs / "flowcnrdb_tiny.zip")],
            check=True,
            capture_output=True,
        )
        synth = [
            "data",
            "synth",
            str(root / "data"),
            "--train-scenes",
            "0",
            "--val-scenes",
            str(args.scenes),
            "--size",
            args.size,
        ]
        subprocess.run([*cli, *synth], check=True, capture_output=True)
        run = ["challenge", "run", "--submissions", str(subs), "--data", str(root / "data"), "--out", str(root / "out")]
        subprocess.run(
            [*cli, *run, "--time-limit", "3600", *([] if args.latency else ["--no-latency"])],
            check=True,
            capture_output=True,
        )
        host = machine()
        print(
            f"{host['cpu']} ({cpu_isa()['isa']}), {host['cores']} cores; {args.scenes} synthetic scenes of {args.size}\n"
        )
        print(
            "| rank | team | status | PSNR (dB) | parameters | G MACs (fvcore, 768x1536) | within the limits | job s |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for t in read_json(root / "out" / "board.json")["teams"]:
            psnr = "-" if t.get("psnr") is None else f"{t['psnr']:.2f}"
            params = "-" if t.get("params") is None else f"{t['params']:,}"
            macs = "-" if t.get("fvcore_macs") is None else f"{t['fvcore_macs'] / 1e9:.1f}"
            print(
                f"| {t['rank'] or '-'} | {t['team']} | {t['status']} | {psnr} | {params} | {macs} | {t.get('within_limits')} | {t.get('job_seconds')} |"
            )
        for t in read_json(root / "out" / "board.json")["teams"]:
            for line in [*(t.get("findings") or []), *([t["error"]] if t.get("error") else [])]:
                print(f"- {t['team']}: {line}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
