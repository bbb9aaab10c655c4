"""The process's allocator settings (harness.allocator), checked with glibc's own statistics."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys, threading
import torch
from harness.allocator import keep_freed_memory
if sys.argv[1] == "set":
    assert keep_freed_memory()
def work():
    for _ in range(3):
        torch.ones(1 << 22).sum()  # 16 MiB, freed again
threads = [threading.Thread(target=work) for _ in range(2)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL("libc.so.6").malloc_stats()  # one 'Arena N:' section per arena, on stderr
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_threads_share_one_arena_once_the_settings_are_taken():
    def arenas(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return sum(line.startswith("Arena ") for line in done.stderr.splitlines())

    assert arenas("default") >= 2  # each thread that allocates gets its own arena
    assert arenas("set") == 1
