"""The process's allocator settings (harness.allocator), checked with glibc's own statistics."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from harness.allocator import TCACHE_COUNT, without_tcache

GLIBC = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt and tunables"
)

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


@GLIBC
def test_threads_share_one_arena_once_the_settings_are_taken():
    def arenas(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return sum(line.startswith("Arena ") for line in done.stderr.splitlines())

    assert arenas("default") >= 2  # each thread that allocates gets its own arena
    assert arenas("set") == 1


HOLES = """
import ctypes
from harness.allocator import keep_freed_memory
assert keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p; libc.malloc.argtypes = [ctypes.c_size_t]; libc.free.argtypes = [ctypes.c_void_p]
libc.posix_memalign.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_size_t]
def aligned(n):  # as torch allocates a tensor
    p = ctypes.c_void_p(); assert libc.posix_memalign(ctypes.byref(p), 64, n) == 0; return p.value
# Empty the thread cache's bins (7 chunks each) first: a full bin lets crumbs merge, so otherwise what the
# process happened to cache before would decide how far the heap grows (6 to 17 blocks, by environment).
held = [libc.malloc(n) for n in range(8, 1032, 16) for _ in range(7)]
N, seen = 8 << 20, []
prev = aligned(N)
for _ in range(80):  # two 8 MiB blocks alive at a time, small blocks coming and going between them
    seen.append(aligned(N))
    libc.free(prev)
    for s in [libc.malloc(k) for k in (24, 40, 56, 72, 88, 200)]: libc.free(s)
    prev = seen[-1]
print((max(seen) - min(seen)) // N + 1)  # how many blocks the stretch they went to would hold
"""


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}


@GLIBC
def test_a_freed_aligned_block_is_reused_once_the_thread_cache_is_off():
    def stretch(env: dict[str, str]) -> int:
        return int(
            subprocess.run([sys.executable, "-c", HOLES], capture_output=True, text=True, check=True, env=env).stdout
        )

    assert stretch(_clean_env()) > 8  # new blocks past the old ones: a freed block's hole is pinned by cached crumbs
    assert stretch(without_tcache(_clean_env())) <= 3  # two live blocks and a place to alternate with


RESTART = """
import sys
from harness.allocator import tcache_off
print(tcache_off(), flush=True)
sys.argv = ["harness", "--version"]
from harness.cli import main
main()
"""


def test_the_command_starts_no_second_process():
    """``harness --version`` (any command) runs in the process that started it: no re-execution, no child."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os\ndef refuse(*a): raise SystemExit('re-executed')\n"
            "os.execve = os.execv = os.fork = refuse\n" + RESTART,
        ],
        capture_output=True,
        text=True,
        env=_clean_env(),
    )
    assert done.returncode == 0, done.stderr
    import harness

    assert done.stdout.split() == [
        "False",
        "harness",
        harness.__version__,
    ]  # started once, with glibc's defaults, and ran


@GLIBC
def test_the_tunable_joins_a_users_others():
    assert without_tcache({"GLIBC_TUNABLES": "glibc.malloc.mxfast=0", "A": "1"}) == {
        "GLIBC_TUNABLES": f"glibc.malloc.mxfast=0:{TCACHE_COUNT}=0",
        "A": "1",
    }
    assert without_tcache({}) == {"GLIBC_TUNABLES": f"{TCACHE_COUNT}=0"}
    assert without_tcache({"GLIBC_TUNABLES": f"{TCACHE_COUNT}=3"}) is None


def test_importing_the_package_and_its_command_line_loads_no_torch():
    code = "import sys, harness, harness.cli, harness.allocator; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
