"""``harness models``."""

from __future__ import annotations

from typing import Annotated

import typer

from harness.cli.common import JsonOpt, console, emit_json


def models_cmd(
    pattern: Annotated[str, typer.Argument(help="Shell-style filter.")] = "*", as_json: JsonOpt = False
) -> None:
    """List the registered models and installed plugins."""
    from harness.model_table import model_rows
    from harness.tables import render_models

    rows = model_rows(pattern)
    if as_json:
        emit_json(rows)
    else:
        render_models(console, rows)


def register(app: typer.Typer) -> None:
    app.command("models")(models_cmd)
