"""What every command module shares: consoles, the error boundary, option aliases, defaults.

Options default to ``None`` and :func:`given` drops them, so the library's
config dataclasses own every default; ``--help`` shows that default through
:func:`default_of`.
"""

from __future__ import annotations

import dataclasses
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

from harness.challenge import IMAGE_HEIGHT, IMAGE_WIDTH
from harness.data import Split
from harness.errors import HarnessError
from harness.inference import Device

console = Console(soft_wrap=True)
err_console = Console(stderr=True)


class BoundaryGroup(TyperGroup):
    """Turns our own errors into one line and an exit code, for every sub-command."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except HarnessError as exc:
            if os.environ.get("HARNESS_DEBUG"):
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


def default_of(config: type, name: str) -> str:
    """The default of a config dataclass field, as ``--help`` shows it."""
    value = {f.name: f for f in dataclasses.fields(config)}[name].default
    return value.value if isinstance(value, Enum) else str(value)


def given(**options: Any) -> dict[str, Any]:
    """The options the user gave (not None): the library's defaults fill the rest."""
    return {k: v for k, v in options.items() if v is not None}


def parse_size(text: str) -> tuple[int, int]:
    """``"768x1536"`` -> (768, 1536)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise HarnessError(f"--size: expected HxW such as {IMAGE_HEIGHT}x{IMAGE_WIDTH}, got {text!r}") from None
    return h, w


SPLIT_HELP = "; ".join(f"{s.value}: {s.help}" for s in Split)

MODEL_HELP = "A registered name or plugin (`harness models`), FILE.py:NAME, package.module:NAME, or submission:PATH (a code submission folder or zip)."
ModelOpt = Annotated[str, typer.Option("--model", "-m", help=MODEL_HELP)]
ModelArgsOpt = Annotated[Optional[str], typer.Option(help="Constructor arguments: a JSON object of keywords ('{\"width\": 64}') or a JSON array of positional ones.")]
TrustCodeOpt = Annotated[Optional[bool], typer.Option("--trust-code", help="Import a code submission's model file (somebody else's code).")]
WeightsOpt = Annotated[Optional[Path], typer.Option(help="Checkpoint (.pth state dict or .safetensors), loaded strictly.")]
DataOpt = Annotated[Optional[Path], typer.Option(help="RawFusion-layout folder; default: the embedded synthetic dataset.")]
ScenesOpt = Annotated[Optional[str], typer.Option(help="Scene numbers overriding the split, e.g. 280,283-285.")]
DeviceOpt = Annotated[Optional[Device], typer.Option(help="auto takes CUDA when available.", show_default=Device.auto.value)]
