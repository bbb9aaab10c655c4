"""The errors the command line turns into one line on stderr and an exit code."""

from __future__ import annotations


class HarnessError(Exception):
    """Bad input or a failed check: the message is one line meant for the user."""

    exit_code = 2


class CheckFailed(HarnessError):
    """A check ran to the end and found problems (exit code 1)."""

    exit_code = 1
