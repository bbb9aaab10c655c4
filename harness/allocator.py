"""The process's memory allocator settings for tensors that come and go by the hundred megabytes.

:func:`keep_freed_memory` asks glibc to serve large blocks from its heap instead of fresh mappings
(no page-by-page zero-filling of every new large tensor), to keep freed memory for reuse, to keep
every thread on one arena and to merge freed small chunks at once (no fast bins). glibc's per-thread
cache of freed chunks can only be turned off by the ``GLIBC_TUNABLES`` environment variable, read
when a process starts: :func:`without_tcache` gives an environment with it off, which ``harness
bench`` starts its workers with. These are settings for a runner (``evaluate``, bench's workers),
taken explicitly and recorded (:func:`describe`); a model or a library call never takes them. Their
measured effect is in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path

M_MXFAST, M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_ARENA_MAX = (
    1,
    -1,
    -2,
    -3,
    -8,
)  # glibc's mallopt parameters (malloc.h)
TCACHE_COUNT = "glibc.malloc.tcache_count"  # the tunable that sizes (0: turns off) each thread's cache of freed chunks


def keep_freed_memory(
    mmap_threshold: int = 1 << 30, trim_threshold: int = (1 << 31) - 1, top_pad: int = 1 << 29
) -> bool:
    """Ask glibc to keep blocks below ``mmap_threshold`` in its heap, not to return freed memory below
    ``trim_threshold``, to give all threads one arena and to merge freed small chunks at once (no fast
    bins); True when the C library took the settings (False elsewhere: musl, macOS, Windows)."""
    libc = _glibc()
    if libc is None:
        return False
    return all(
        libc.mallopt(param, value) == 1
        for param, value in (
            (M_MMAP_THRESHOLD, mmap_threshold),
            (M_TRIM_THRESHOLD, trim_threshold),
            (M_TOP_PAD, top_pad),
            (M_ARENA_MAX, 1),
            (M_MXFAST, 0),
        )
    )


def without_tcache(environ: Mapping[str, str]) -> dict[str, str] | None:
    """``environ`` with glibc's thread cache turned off (``GLIBC_TUNABLES``), or None when there is nothing
    to change: not glibc, or the variable already sets the cache (a user's own choice is kept)."""
    tunables = environ.get("GLIBC_TUNABLES", "")
    if _glibc() is None or TCACHE_COUNT in _parsed(tunables):
        return None
    return {**environ, "GLIBC_TUNABLES": ":".join(filter(None, (tunables, f"{TCACHE_COUNT}=0")))}


def relaunch_without_tcache() -> None:
    """Restart this process (same interpreter, same arguments, same PID) with glibc's thread cache off,
    once: call it before importing anything heavy. Returns when nothing needs changing."""
    env = without_tcache(os.environ)
    if env is not None and sys.executable and sys.orig_argv:
        os.execve(sys.executable, sys.orig_argv, env)


def tcache_off() -> bool:
    """Whether glibc's thread cache is off in this process: the tunable as it stood when the process started."""
    try:
        start = Path("/proc/self/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    tunables = next((v[len(b"GLIBC_TUNABLES=") :].decode() for v in start if v.startswith(b"GLIBC_TUNABLES=")), "")
    return _parsed(tunables).get(TCACHE_COUNT) == "0"


def _parsed(tunables: str) -> dict[str, str]:
    """``GLIBC_TUNABLES``'s ``name=value:name=value`` as a mapping."""
    return dict(item.partition("=")[::2] for item in tunables.split(":") if item)


def describe(kept: bool) -> str:
    """This process's allocator in words, ``kept`` being what :func:`keep_freed_memory` returned."""
    if not kept:
        return "the C library's defaults"
    return "glibc: freed memory kept, one arena, no fast bins, " + (
        "no thread cache" if tcache_off() else "thread cache on"
    )


def _glibc() -> ctypes.CDLL | None:
    """The C library, when it is glibc (whose mallopt parameters and tunables the above mean)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") else None
