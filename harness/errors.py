"""The errors the command line turns into one line on stderr and an exit code."""

from __future__ import annotations


class HarnessError(Exception):
    """Bad input or a failed check: the message is one line meant for the user."""

    exit_code = 2


class CheckFailed(HarnessError):
    """A check ran to the end and found problems (exit code 1)."""

    exit_code = 1


class Undecided(HarnessError):
    """A check that could not reach a verdict: a counter failed, or something could not be counted (exit code 3)."""

    exit_code = 3


class HarnessWarning(UserWarning):
    """Something the user should know that does not stop the command (printed as one ``warning:`` line)."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type when it has none), cut to ``limit``."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__
