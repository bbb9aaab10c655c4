"""A rich progress bar for anything long, as a context manager yielding ``advance``."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

Advance = Callable[..., None]


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[Advance]:
    """``advance(done, total, text="")`` moves the bar; ``total=0`` keeps the last total."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(label, total=None, note="")

        def advance(done: int, total: int = 0, text: str = "") -> None:
            progress.update(task, completed=done, total=total or progress.tasks[task].total or None, note=text)

        yield advance
