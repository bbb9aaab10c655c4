"""One progress protocol for every long step, and the rich bar the command line shows for it.

Library functions take ``progress: Progress | None`` and call
``progress(done, total, note)``; they never print. The command line passes the
``advance`` of :func:`progress_bar`, which starts drawing at its first call, so
a command that fails before any work prints nothing but its error. Where the
console is not a terminal (a CI log, ``nohup``, a pipe) it prints plain lines
instead: one per finished step, at most one per :data:`PLAIN_EVERY_S`,
and always the last.
"""

from __future__ import annotations

import contextlib
import time
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


PLAIN_EVERY_S = 2.0


def plain_lines(label: str, console: Console) -> Progress:
    """An ``advance`` that prints ``label: done/total note`` lines, for a console that is not a terminal."""
    last_time = -float("inf")
    last_done = -1

    def advance(done: int, total: int, note: str = "") -> None:
        nonlocal last_time, last_done
        now = time.monotonic()
        finished = bool(total) and done >= total
        if done == last_done or (now - last_time < PLAIN_EVERY_S and not finished):
            return
        last_time, last_done = now, done
        count = f"{done}/{total}" if total else str(done)
        console.print(f"{label}: {count} {note}".rstrip(), markup=False, highlight=False, soft_wrap=True)

    return advance


@contextlib.contextmanager
def progress_bar(label: str, console: Console | None = None) -> Iterator[Progress]:
    """A rich bar labelled ``label`` (plain lines off a terminal); yields its ``advance(done, total, note)``."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield plain_lines(label, console)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
    )
    bar = RichProgress(*columns, console=console, transient=True)
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
