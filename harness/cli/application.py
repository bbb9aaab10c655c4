"""The ``harness`` command line, composed: a thin layer that parses, calls the library, renders.

One module per command group, composed here. One error boundary
(:class:`harness.cli.common.BoundaryGroup`): a :class:`harness.errors.HarnessError`
becomes one line on stderr and its exit code (2 for bad input);
``HARNESS_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

from typing import Annotated

import typer

from harness.cli import bench, budget, evaluate, export, models, report, train
from harness.cli.challenge import challenge_app
from harness.cli.common import RootGroup
from harness.cli.data import data_app
from harness.cli.package import package_app

APP_HELP = (
    "The workbench for the NTIRE 2025 Efficient Burst HDR and Restoration challenge: models, data, "
    "server-exact evaluation, FLOP budgets, training, reports and Codalab-ready zips. "
    "Errors in input print one line and exit 2; HARNESS_DEBUG=1 shows the traceback."
)
app = typer.Typer(cls=RootGroup, no_args_is_help=True, help=APP_HELP, rich_markup_mode=None)


def _version(value: bool) -> None:
    if value:
        import harness

        typer.echo(f"harness {harness.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
) -> None:
    """The workbench for the NTIRE 2025 Efficient Burst HDR and Restoration challenge."""


for module in (models, evaluate, train, budget, bench, export, report):
    module.register(app)
app.add_typer(data_app, name="data")
app.add_typer(package_app, name="package")
app.add_typer(challenge_app, name="challenge")
