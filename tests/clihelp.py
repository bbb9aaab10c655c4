"""Running the real CLI in-process, from a chosen folder, and reading its one error line."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner, Result

from harness.cli import app

runner = CliRunner()


def invoke(*args: object, cwd: Path | None = None) -> Result:
    """``harness ARGS`` (each turned into text) run in ``cwd``."""
    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    try:
        return runner.invoke(app, [str(a) for a in args])
    finally:
        os.chdir(old)


def one_error(output: str) -> str:
    """The only ``error:`` line of an output that holds no traceback."""
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]
