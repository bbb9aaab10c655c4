"""The process's memory allocator, tuned for tensors that come and go by the hundred megabytes.

glibc's malloc maps every block above a threshold (dynamic, at most 32 MiB) afresh and unmaps it
when freed, so each new large tensor is zero-filled page by page by the kernel on first touch.
Measured on FlowCNRDB at 384x768 (2 cores): 0.73 M page faults and 1.4 s of system time in one
9.8 s forward. :func:`keep_freed_memory` serves large blocks from the heap and keeps freed memory
for reuse (0 page faults, 8.9 s; bfloat16 7.9 s -> 6.2 s). It also keeps every thread on the one
arena: a thread's own arena keeps what it freed for that thread alone, so FlowCNRDB's frame threads
(stages 1 and 2, two frames side by side) held their peaks beside the main thread's (full size: peak
3.76 GB with an arena per thread, 2.60 GB with one, no slower). The CLI calls it once at start, so
every model it runs (the published code's as well) gets it.

Kept freed memory must also be reusable. torch asks for 64-byte aligned blocks, and glibc's memalign
(before 2.38) cuts each from a larger free chunk, handing the few bytes before and after back as
tiny free chunks. Those land in the thread cache (tcache) or the fast bins, where they stay marked
in use instead of merging with their free neighbours, so when the large block is freed its hole is
exactly its own size (its neighbours look taken), too small for the next aligned request of that
size; that request extends the heap. In a bfloat16 forward, whose many temporaries come and go
between threads, this made the peak vary from run to run (measured with an allocation trace at
384x768: 392 MB live at most, peak resident 1.1-2.4 GB in eight runs; full size 3.1 and 4.6 GB).
With neither (``mallopt`` turns the fast bins off; the thread cache has no ``mallopt`` setting, only
the ``GLIBC_TUNABLES`` environment variable, read when the process starts) the tiny chunks merge
back at once: 0.82-0.86 GB against 1.41-2.26 GB in four runs each at 384x768
(``benchmarks/allocator_peaks.py``), 2.09 and 2.22 GB at full size, no slower.
:func:`relaunch_without_tcache` restarts the ``harness`` command once with that variable set (before
anything heavy is imported); ``harness bench`` starts its workers with it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path

M_MXFAST, M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_ARENA_MAX = 1, -1, -2, -3, -8  # glibc's mallopt parameters (malloc.h)
TCACHE_COUNT = "glibc.malloc.tcache_count"  # the tunable that sizes (0: turns off) each thread's cache of freed chunks


def keep_freed_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = (1 << 31) - 1, top_pad: int = 1 << 29) -> bool:
    """Ask glibc to keep blocks below ``mmap_threshold`` in its heap, not to return freed memory below
    ``trim_threshold``, to give all threads one arena and to merge freed small chunks at once (no fast
    bins); True when the C library took the settings (False elsewhere: musl, macOS, Windows)."""
    libc = _glibc()
    if libc is None:
        return False
    return all(libc.mallopt(param, value) == 1 for param, value in
               ((M_MMAP_THRESHOLD, mmap_threshold), (M_TRIM_THRESHOLD, trim_threshold), (M_TOP_PAD, top_pad), (M_ARENA_MAX, 1), (M_MXFAST, 0)))


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
    tunables = next((v[len(b"GLIBC_TUNABLES="):].decode() for v in start if v.startswith(b"GLIBC_TUNABLES=")), "")
    return _parsed(tunables).get(TCACHE_COUNT) == "0"


def _parsed(tunables: str) -> dict[str, str]:
    """``GLIBC_TUNABLES``'s ``name=value:name=value`` as a mapping."""
    return dict(item.partition("=")[::2] for item in tunables.split(":") if item)


def describe(kept: bool) -> str:
    """This process's allocator in words, ``kept`` being what :func:`keep_freed_memory` returned."""
    if not kept:
        return "the C library's defaults"
    return "glibc: freed memory kept, one arena, no fast bins, " + ("no thread cache" if tcache_off() else "thread cache on")


def _glibc() -> ctypes.CDLL | None:
    """The C library, when it is glibc (whose mallopt parameters and tunables the above mean)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") else None
