"""The README's promise: two commands first, and CI runs the second one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
