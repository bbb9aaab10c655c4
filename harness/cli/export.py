"""``harness export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.challenge import parse_size
from harness.cli.common import (
    JsonOpt,
    ModelArgsOpt,
    ModelOpt,
    ThreadsOpt,
    TrustCodeOpt,
    WeightsOpt,
    console,
    emit_json,
)
from harness.options import Format


def export_cmd(
    model: ModelOpt,
    fmt: Annotated[Format, typer.Option("--format", help="onnx (a .onnx file) or openvino (IR: .xml and .bin).")],
    model_args: ModelArgsOpt = None,
    trust_code: TrustCodeOpt = None,
    weights: WeightsOpt = None,
    size: Annotated[str, typer.Option(help="H x W of the bursts the exported model takes.")] = "768x1536",
    out: Annotated[Path | None, typer.Option(help="Output file.", show_default="exports/MODEL.onnx or .xml")] = None,
    threads: ThreadsOpt = None,
    random_init: Annotated[
        bool | None,
        typer.Option(
            "--random-init",
            help="Export random weights, N(0, 0.02) from seed 0: a deployability check without a checkpoint.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a model for ONNX Runtime or OpenVINO and print its parity against the model as written."""
    from harness.export import describe, export_model
    from harness.loading import load_model
    from harness.options import default_run_dir
    from harness.sources import parse_model_args

    loaded = load_model(model, parse_model_args(model_args), bool(trust_code), weights, bool(random_init))
    name = default_run_dir(model, "x").name.removesuffix("-x")
    target = out or Path("exports") / f"{name}.{'onnx' if fmt is Format.onnx else 'xml'}"
    paths, result = export_model(loaded.model.eval(), fmt, parse_size(size), target, threads)
    if as_json:
        emit_json({**describe(paths, result), "weights": loaded.weights})
        return
    console.print(f"wrote {', '.join(str(p) for p in paths)} (weights: {loaded.weights})")
    console.print(result.line())


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
