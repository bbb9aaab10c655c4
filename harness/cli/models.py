"""``harness models``."""

from __future__ import annotations

from typing import Annotated

import typer

from harness.cli.common import console


def models_cmd(pattern: Annotated[str, typer.Argument(help="Shell-style filter.")] = "*") -> None:
    """List the registered models."""
    from harness.model_table import model_rows
    from harness.tables import render_models

    render_models(console, model_rows(pattern))


def register(app: typer.Typer) -> None:
    app.command("models")(models_cmd)
