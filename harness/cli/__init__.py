"""The ``harness`` command line (:mod:`harness.cli.application` composes it).

Importing this package loads nothing heavy; :func:`main` loads the commands.
"""

from __future__ import annotations

from typing import Any


def main() -> None:
    """Console entry point."""
    from harness.cli.application import app

    app(prog_name="harness")


def __getattr__(name: str) -> Any:
    """``app``, the Typer application (``from harness.cli import app``), composed on first use."""
    if name != "app":
        raise AttributeError(f"module 'harness.cli' has no attribute {name!r}")
    from harness.cli.application import app

    return app


__all__ = ["app", "main"]
