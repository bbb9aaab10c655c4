"""One progress protocol for every long step, and the rich bar the command line shows for it.

Library functions take ``progress: Progress | None`` and call
``progress(done, total, note)``; they never print. The command line passes the
``advance`` of :func:`progress_bar`, which starts drawing at its first call, so
a command that fails before any work prints nothing but its error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class Progress(Protocol):
    def __call__(self, done: int, total: int, note: str = "") -> None:
        """``done`` of ``total`` steps (``total=0``: unknown), with a short note."""


def notify(progress: Progress | None, done: int, total: int, note: str = "") -> None:
    """Call ``progress`` when there is one."""
    if progress is not None:
        progress(done, total, note)


@contextlib.contextmanager
def progress_bar(label: str, console: Console | None = None) -> Iterator[Progress]:
    """A rich bar labelled ``label``; yields its ``advance(done, total, note)``."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
    )
    bar = RichProgress(*columns, console=console or Console(stderr=True), transient=True)
    task = bar.add_task(label, total=None, note="")
    started = False

    def advance(done: int, total: int, note: str = "") -> None:
        nonlocal started
        if not started:
            bar.start()
            started = True
        bar.update(task, completed=done, total=total or None, note=note)

    try:
        yield advance
    finally:
        if started:
            bar.stop()
