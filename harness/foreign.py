"""Calling somebody else's code: one boundary around every call into a model's code.

Importing a model file, constructing the model and running its forward pass are
calls into code the harness did not write. :func:`their_code` turns whatever
escapes such a call — any exception, and ``SystemExit`` too (their ``sys.exit``
is an error, not the harness's exit) — into one :class:`HarnessError` line
naming the file and line of their code where it was raised and what it raised.
Errors raised by the harness itself, or with no frame in their code, pass
through unchanged: they are the harness's own, not the model's.
"""

from __future__ import annotations

import contextlib
import io
import sys
import sysconfig
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

from harness.errors import HarnessError, first_line

_HARNESS = Path(__file__).resolve().parent


def _library_roots() -> tuple[Path, ...]:
    """Folders of code that is not the model's: the harness, its models, Python's library and installed packages."""
    paths = sysconfig.get_paths()
    roots = {_HARNESS, Path(paths["stdlib"]), Path(paths["platstdlib"]), Path(paths["purelib"]), Path(paths["platlib"])}
    models = sys.modules.get("harness.models")
    if models is not None and getattr(models, "__file__", None):
        roots.add(Path(models.__file__).resolve().parent)  # type: ignore[arg-type]
    return tuple(r.resolve() for r in roots)


def _theirs(filename: str, roots: tuple[Path, ...]) -> bool:
    if filename.startswith("<"):
        return False
    path = Path(filename).resolve()
    return not any(root == path or root in path.parents for root in roots)


def their_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of ``exc``'s traceback that lies in the model's code (None when none does)."""
    roots = _library_roots()
    frames = traceback.extract_tb(exc.__traceback__)
    return next((f for f in reversed(frames) if _theirs(f.filename, roots)), None)


WAIT_NOTE_S = 10.0
"""After this long inside an import or a construction, a line on stderr says what the harness is waiting for."""


@contextlib.contextmanager
def their_code(what: str, label: str = "the model", note_wait: bool = False) -> Iterator[None]:
    """Around a call into a model's code (``what``: "import", "construction", "forward pass"): whatever escapes
    becomes ``FILE:LINE: LABEL's WHAT raised TYPE: MESSAGE`` (a SystemExit: ``... called sys.exit(CODE)``).
    With ``note_wait``, a call still running after WAIT_NOTE_S is said on stderr (it is not stopped)."""
    stderr = sys.stderr
    timer = threading.Timer(
        WAIT_NOTE_S, lambda: print(f"still waiting for {label}'s {what} after {WAIT_NOTE_S:g} s ...", file=stderr)
    )
    timer.daemon = True
    if note_wait:
        timer.start()
    try:
        yield
    except HarnessError:
        raise
    except (Exception, SystemExit) as exc:
        frame = their_frame(exc)
        if frame is None and not isinstance(exc, SystemExit):
            raise
        where = f"{frame.filename}:{frame.lineno}" if frame is not None else label
        if isinstance(exc, SystemExit):
            happened = f"called sys.exit({exc.code!r}), which ends nothing here"
        else:
            happened = f"raised {type(exc).__name__}: {first_line(exc)}"
        raise HarnessError(f"{where}: {label}'s {what} {happened}") from None
    finally:
        timer.cancel()


@contextlib.contextmanager
def as_if_run_alone(path: Path) -> Iterator[None]:
    """Import-time code sees the command line it would see run alone (``sys.argv == [path]``, so an argument parser
    at import finds none of the harness's options) and prints into a buffer: on success what it printed goes to
    stderr (never into the harness's stdout, which may be a JSON document); on failure its last line joins the
    error. ``sys.argv``, stdout and stderr are restored."""
    argv, printed = sys.argv, io.StringIO()
    sys.argv = [str(path)]
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            yield
    except (Exception, SystemExit) as exc:
        said = printed.getvalue().strip().splitlines()
        if said and isinstance(exc, SystemExit):
            raise HarnessError(f"{path}: exited at import, saying: {said[-1][:200]}") from None
        raise
    finally:
        sys.argv = argv
    sys.stderr.write(printed.getvalue())
