"""Running somebody else's code in a sandbox: Debian's bubblewrap (``bwrap``), never in the organiser's process.

The sandbox has no network (a network namespace of its own), a read-only file system except the folders it is
given and a private ``/tmp``, a scrubbed environment, an address-space limit and a wall-clock limit; the whole
process tree is killed at the limit. Without bubblewrap (or where it cannot create namespaces) the same limits
apply to a plain child process, and only when the organiser asked for that (``--no-sandbox``).
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
MEMORY_SIGNS = re.compile(r"MemoryError|Cannot allocate memory|can't allocate memory|std::bad_alloc|out of memory")


@dataclass(frozen=True)
class Limits:
    seconds: float
    memory_gb: float


@dataclass
class Outcome:
    status: str  # ok | failed | timed out | exceeded memory
    returncode: int | None
    seconds: float


def sandbox_problem() -> str | None:
    """Why no sandbox can be made here (None when bubblewrap works)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap)"
    probe = subprocess.run([bwrap, *isolation([], []), "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"bubblewrap cannot create namespaces here ({(probe.stderr.strip() or 'no reason given')[:160]})"
    return None


def isolation(readable: list[Path], writable: list[Path]) -> list[str]:
    """bubblewrap's options for the sandbox: everything read-only, a private /tmp, ``readable`` read-only and
    ``writable`` writable over it, no namespace shared with the organiser."""
    args = ["--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/", "/", "--dev", "/dev"]
    args += ["--proc", "/proc", "--tmpfs", "/tmp"]  # then what it reads and writes, over the private /tmp
    for folder in readable:
        args += ["--ro-bind", str(folder), str(folder)]
    for folder in writable:
        args += ["--bind", str(folder), str(folder)]
    return args


def _code_roots() -> list[Path]:
    """The folders the job's Python needs to see: the harness (an editable install's source too), its models, the
    interpreter's prefix and every folder on the path; bound read-only over the sandbox's private /tmp."""
    import harness
    import harness.models

    roots = {Path(harness.__file__).resolve().parent.parent, Path(harness.models.__file__).resolve().parent}
    roots |= {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, *sys.path) if p and Path(p).is_dir()}
    return sorted(r for r in roots if r.parts[:2] == ("/", "tmp"))


def _environment() -> dict[str, str]:
    """What the code sees of the environment: a path, a home and a cache of its own, nothing of the organiser's."""
    return {
        "PATH": SANDBOX_PATH,
        "HOME": "/tmp",
        "HARNESS_CACHE": "/tmp/harness-cache",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1)),
    }


def run_sandboxed(
    command: list[str], readable: list[Path], writable: list[Path], limits: Limits, log: Path, sandbox: bool
) -> Outcome:
    """Run ``command`` (its output into ``log``) in the sandbox, reading ``readable`` and writing ``writable`` and its
    own ``/tmp`` only; or, with ``sandbox`` False, as a child process under the same limits."""
    memory = int(limits.memory_gb * 2**30)

    def limit() -> None:  # in the child, before exec
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    env = _environment()
    argv = command
    if sandbox:  # bwrap takes the environment as options once it has been cleared
        bound = [*isolation([*_code_roots(), *readable], writable), "--chdir", str(writable[0]), "--clearenv"]
        setenv = [a for k, v in env.items() for a in ("--setenv", k, v)]
        argv = [shutil.which("bwrap") or "bwrap", *bound, *setenv, *command]
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=limit, start_new_session=True
        )
        try:
            code: int | None = proc.wait(timeout=limits.seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return Outcome("timed out", None, time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    if code == 0:
        return Outcome("ok", 0, seconds)
    said = log.read_text(errors="replace")[-4000:]
    return Outcome("exceeded memory" if MEMORY_SIGNS.search(said) else "failed", code, seconds)
