"""The README's promise: two commands first, and CI runs the second one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_opens_with_two_commands():
    text = (ROOT / "README.md").read_text()
    head = text.split("\n## ")[0]
    assert len(re.findall(r"```bash\n", head)) == 2
    first, second = _readme_commands()[:2]
    assert first.startswith("pip install torch==2.13.0") and "harness evaluate" in first
    assert "pip install torch==2.13.0 && " in second and "chromium-driver" in second and second.endswith("pytest -q")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line for line in ci if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert commands == [_readme_commands()[1]]


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _entry_points_dist(toml_text: str, site: Path) -> None:
    """What `pip install` of a package with this pyproject table leaves on sys.path: a .dist-info with entry_points.txt."""
    import tomllib

    groups = tomllib.loads(toml_text)["project"]["entry-points"]
    info = site / "my_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 1.0\n")
    lines = [f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in groups.items()]
    (info / "entry_points.txt").write_text("\n".join(lines))


def test_your_own_model_section_runs_as_written(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{tmp_path / 'site'}", "COLUMNS": "200"}
    blocks = re.findall(r"```(python|bash|toml)\n(.+?)\n```", _section("Your own model"), re.S)
    assert [lang for lang, _ in blocks] == ["python", "bash", "python", "toml", "bash", "toml", "bash"]
    outputs = []
    for lang, body in blocks:
        first = body.splitlines()[0]
        if lang == "toml" and "pyproject.toml" in first:
            _entry_points_dist(body, tmp_path / "site")
        elif first.startswith("# ") and first[2:].strip().endswith((".py", ".toml")):
            (tmp_path / first[2:].strip()).write_text(body + "\n")
        elif lang == "python":
            proc = subprocess.run([sys.executable, "-c", body], cwd=tmp_path, env=env, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
        else:
            for line in body.splitlines():
                proc = subprocess.run(
                    ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
                )
                assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
                outputs.append(proc.stdout)
    assert "my_net" in outputs[3] and "plugin: my_net:MyNet" in outputs[3]
    assert "verified: MyNet" in outputs[-1]
    import json

    a = json.loads((tmp_path / "runs" / "my_net-val" / "summary.json").read_text())
    b = json.loads((tmp_path / "runs" / "my_net-submission" / "summary.json").read_text())
    assert a["source"]["kind"] == "file" and b["source"]["kind"] == "submission"
    assert a["psnr"] == b["psnr"]  # the packaged submission is the same network with the same weights


def test_organising_a_challenge_section_runs_as_written(tmp_path, small_data):
    import json
    import os
    import shutil
    import subprocess

    from team_code import toy_submission

    toy_submission(tmp_path / "teams" / "toy", seed=1)
    shutil.copytree(small_data, tmp_path / "data")
    (body,) = re.findall(r"```bash\n(.+?)\n```", _section("Organising a challenge"), re.S)
    for line in body.splitlines():
        proc = subprocess.run(
            ["bash", "-c", line],
            cwd=tmp_path,
            env={**os.environ, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
    board = json.loads((tmp_path / "runs" / "challenge" / "board.json").read_text())
    assert [(t["team"], t["rank"], t["status"]) for t in board["teams"]] == [("toy", 1, "ok")]
    assert (tmp_path / "runs" / "challenge" / "board.html").is_file()
