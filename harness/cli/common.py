"""What every command module shares: consoles, the error boundary, option aliases, defaults.

Options default to ``None`` and :func:`given` drops them, so the library's
config dataclasses own every default; ``--help`` shows that default through
:func:`default_of`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tomllib
import warnings
import zipfile
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

try:  # typer vendors click from 0.20 on
    from typer._click import exceptions as cli_errors
except ImportError:  # pragma: no cover
    from click import exceptions as cli_errors  # type: ignore[no-redef]

from harness.challenge import IMAGE_HEIGHT, IMAGE_WIDTH
from harness.errors import HarnessError, HarnessWarning, first_line
from harness.json_values import jsonable
from harness.options import Device, Precision, Split

console = Console(soft_wrap=True)
err_console = Console(stderr=True)


def _one_line(exc: BaseException) -> tuple[str, int]:
    """The message and exit code of an error that reached the boundary."""
    if isinstance(exc, HarnessError):
        return str(exc), exc.exit_code
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or first_line(exc)}", 2
    return f"{type(exc).__name__}: {first_line(exc)}", 2


BOUNDARY = (HarnessError, OSError, zipfile.BadZipFile, json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeError)
"""Errors that are about the user's input or machine (files, permissions, formats): one line, never a traceback."""


class BoundaryGroup(TyperGroup):
    """Turns input errors into one line and an exit code, for every sub-command; HarnessWarnings into warning lines."""

    def invoke(self, ctx: Any) -> Any:
        as_json = _wants_json(ctx)  # read now: click empties the arguments as it hands them to the sub-command
        _EMITTED.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # library warnings are not the user's business
            warnings.simplefilter("always", HarnessWarning)
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except BOUNDARY as exc:
                if os.environ.get("HARNESS_DEBUG"):
                    raise
                message, code = _one_line(exc)
                print_error(message)
                if as_json and not _EMITTED:
                    emit_json({"error": message, "exit_code": code})
                raise typer.Exit(code) from None


def _wants_json(ctx: Any) -> bool:
    """Whether the command was asked for ``--json`` (then an error is a JSON document on stdout too)."""
    given = [*getattr(ctx, "_protected_args", []), *getattr(ctx, "protected_args", []), *ctx.args]
    return "--json" in given[: given.index("--")] if "--" in given else "--json" in given


class RootGroup(BoundaryGroup):
    """The ``harness`` group: a usage error (a bad option value, say) is one ``error:`` line too, exit 2."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        parent: Any = super()  # click's main takes standalone_mode as a keyword among its others
        if not standalone_mode:
            return parent.main(*args, standalone_mode=False, **kwargs)
        try:
            result = parent.main(*args, standalone_mode=False, **kwargs)
        except cli_errors.NoArgsIsHelpError:
            return parent.main(*args, standalone_mode=True, **kwargs)  # the help, as usual
        except cli_errors.ClickException as exc:
            print_error(exc.format_message())
            sys.exit(exc.exit_code)
        except typer.Abort:
            print_error("aborted")
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


def print_error(message: str, label: str = "error:", style: str = "bold red") -> None:
    """One line on stderr; the message is printed as it is (no rich markup: ``[team]`` stays ``[team]``)."""
    err_console.print(Text.assemble((label, style), " ", str(message)), highlight=False, soft_wrap=True)


def _show_warning(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
    print_error(str(message), "warning:", "yellow")


def default_of(config: type, name: str) -> str:
    """The default of a config dataclass field, as ``--help`` shows it."""
    value = {f.name: f for f in dataclasses.fields(config)}[name].default
    return value.value if isinstance(value, Enum) else str(value)


_EMITTED: list[bool] = []  # whether this command printed its JSON document (an error after it adds none)


def emit_json(doc: Any) -> None:
    """One JSON document on stdout."""
    typer.echo(json.dumps(jsonable(doc), default=str))
    _EMITTED.append(True)


def given(**options: Any) -> dict[str, Any]:
    """The options the user gave (not None): the library's defaults fill the rest."""
    return {k: v for k, v in options.items() if v is not None}


SPLIT_HELP = "; ".join(f"{s.value}: {s.help}" for s in Split)

MODEL_HELP = "A registered name or plugin (`harness models`), FILE.py:NAME, package.module:NAME, or submission:PATH (a code submission folder or zip)."
ModelOpt = Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)]
ModelArgsOpt = Annotated[
    str | None,
    typer.Option(
        help="Constructor arguments: a JSON object of keywords ('{\"width\": 64}') or a JSON array of positional ones."
    ),
]
BUDGET_HELP = (
    "Put the model's budget in the report (computed once per model and size, and cached; "
    "a code submission's needs --trust-code)."
)
TrustCodeOpt = Annotated[
    bool | None, typer.Option("--trust-code", help="Import a code submission's model file (somebody else's code).")
]
WeightsOpt = Annotated[Path | None, typer.Option(help="Checkpoint (.pth state dict or .safetensors), loaded strictly.")]
DataOpt = Annotated[Path | None, typer.Option(help="RawFusion-layout folder; default: the embedded synthetic dataset.")]
ScenesOpt = Annotated[str | None, typer.Option(help="Scene numbers overriding the split, e.g. 280,283-285.")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print exactly one JSON document on stdout (and nothing else there).")
]
SizeOpt = Annotated[str, typer.Option(help="H x W of the burst (the challenge's: 768x1536, where the limits hold).")]
OFFICIAL_SIZE = f"{IMAGE_HEIGHT}x{IMAGE_WIDTH}"
DeviceOpt = Annotated[
    Device | None, typer.Option(help="auto takes CUDA when available.", show_default=Device.auto.value)
]
PrecisionOpt = Annotated[
    Precision | None,
    typer.Option(
        help="fp32: IEEE float32, on GPUs too; tf32: float32 with TF32 tensor-core convolutions and matrix products, "
        "GPUs only; bf16: bfloat16 weights and activations with grid sampling, norms and statistics in float32 "
        "(GPUs: autocast), refused where the hardware lacks bfloat16, held to float32 by the equivalence gate; "
        "fp16: float16 autocast, GPUs only.",
        show_default=Precision.fp32.value,
    ),
]
BACKEND_HELP = (
    "How the model runs: eager (as written), fast (FlowCNRDB's CPU path), compile (torch.compile), onnxruntime, "
    "openvino; auto: fast for a FlowCNRDB variant on a CPU, else eager. Every backend but eager float32 is held "
    "to eager float32 on the first burst (the equivalence gate)."
)
BackendOpt = Annotated[str | None, typer.Option("--backend", help=BACKEND_HELP, show_default="auto")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        help="CPU threads during inference (set around each forward, restored after).",
        min=1,
        show_default="torch's default",
    ),
]
