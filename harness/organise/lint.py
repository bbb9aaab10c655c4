"""Lint a team's code submission without running any of it: layout, model file and class, imports that leave the
submission, absolute paths, and its checkpoint read weights-only. Each finding is one line of the team's row."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Any

from harness.challenge import MAX_DEMO_BYTES
from harness.checkpoint import read_state_dict
from harness.errors import HarnessError
from harness.submission import read_submission

NETWORK = {"socket", "urllib", "http", "requests", "httpx", "ftplib", "smtplib", "paramiko", "aiohttp", "websocket"}
KNOWN = {"torch", "numpy", "einops", "cv2", "timm", "torchvision", "scipy", "PIL", "skimage", "tifffile", "fvcore"}
KNOWN |= {"models"}  # the submission's own package
ABSOLUTE = re.compile(r"(/[\w.+-]+)+/?|[A-Za-z]:[\\/].*")  # a POSIX path of one segment or more, or a drive's


def _imports(tree: ast.Module) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name.split(".")[0], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
    return found


def _source_findings(path: Path, root: Path, local: set[str]) -> list[str]:
    rel = path.relative_to(root).as_posix()
    if path.stat().st_size > MAX_DEMO_BYTES:
        return [f"{rel}: {path.stat().st_size:,} bytes, not read"]
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return [f"{rel}: does not parse ({type(exc).__name__})"]
    findings = []
    for name, line in _imports(tree):
        if name in NETWORK:
            findings.append(f"{rel}:{line}: imports {name} (network access; the sandbox has none)")
        elif name not in sys.stdlib_module_names and name not in KNOWN and name not in local:
            findings.append(f"{rel}:{line}: imports {name}, which is neither in the submission nor a common library")
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and ABSOLUTE.fullmatch(node.value):
            findings.append(f"{rel}:{node.lineno}: absolute path {node.value[:60]!r} (outside the submission)")
    return findings


def lint(root: Path) -> dict[str, Any]:
    """The findings for one submission folder, and what the run needs: can it run, its class, its checkpoint."""
    try:
        sub = read_submission(root)
    except HarnessError as exc:
        return {"runnable": False, "findings": [str(exc)]}
    findings: list[str] = []
    model_files = sorted((sub.root / "models").glob("Model_*.py"))
    if len(model_files) > 1:
        findings.append(f"models/: {len(model_files)} model files; test_demo.py uses {sub.model_file.name}")
    if sub.args_problem:
        findings.append(sub.args_problem.replace(str(sub.root) + "/", ""))
    local = {p.stem for p in sub.root.rglob("*.py")} | {p.name for p in sub.root.iterdir() if p.is_dir()}
    for path in sorted((sub.root / "models").rglob("*.py")) + [sub.root / "test_demo.py"]:
        findings += _source_findings(path, sub.root, local)
    checkpoint = None
    if len(sub.checkpoints) > 1:
        findings.append(f"model_zoo/: {len(sub.checkpoints)} files; which one is the model's?")
    elif sub.checkpoint is None:
        findings.append("model_zoo/: no checkpoint")
    else:
        try:
            tensors = read_state_dict(sub.checkpoint)
            checkpoint = {"file": sub.checkpoint.name, "tensors": len(tensors)}
        except HarnessError as exc:
            findings.append(f"model_zoo/{sub.checkpoint.name}: {str(exc).split(': ', 1)[-1]}")
    return {
        "runnable": checkpoint is not None and not sub.args_problem,
        "findings": findings,
        "model_file": sub.model_file.name,
        "class": sub.class_name,
        "checkpoint": checkpoint,
    }
