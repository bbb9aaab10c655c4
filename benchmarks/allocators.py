"""The memory allocator under FlowCNRDB's fast backend: glibc's defaults, harness's glibc settings, jemalloc, tcmalloc.

    python benchmarks/allocators.py [--size 384x768] [--precisions fp32,bf16] [--rounds 2] [--threads 2]

Each configuration runs in a fresh process (seeded weights N(0, 0.02), one warm-up and three timed forwards
through the ``fast`` backend): glibc as it comes; glibc with ``harness.allocator``'s settings (freed memory
kept, one arena, no fast bins, thread cache off); jemalloc and tcmalloc through ``LD_PRELOAD`` (Debian's
``libjemalloc2`` and ``libtcmalloc-minimal4``), the way ``torch.backends.xeon.run_cpu`` uses them. Rounds
interleave the configurations so that a change in the machine's load touches all of them. Prints a
Markdown table: median seconds and peak resident memory per configuration and precision.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from harness.allocator import without_tcache

WORKER = """
import json, sys, time
import torch
from harness import create_model
from harness.allocator import keep_freed_memory
from harness.backends import prepare_runner
from harness.inference import Precision, peak_memory_mb
if sys.argv[1] == "harness":
    assert keep_freed_memory()
torch.manual_seed(0)
model = create_model("flowcnrdb").eval()
for p in model.parameters():
    torch.nn.init.normal_(p, std=0.02)
h, w = (int(v) for v in sys.argv[2].split("x"))
run = prepare_runner(model, "fast", torch.device("cpu"), Precision(sys.argv[3]), (h, w), int(sys.argv[4])).prepared
x = torch.rand(1, 9, h, w)
times = []
for i in range(4):
    t = time.perf_counter(); run(x); times.append(time.perf_counter() - t)
print(json.dumps({"seconds": times[1:], "peak_mb": peak_memory_mb(torch.device("cpu"))}))
"""

LIBS = Path("/usr/lib/x86_64-linux-gnu")
CONFIGS = {
    "glibc defaults": ("plain", {}),
    "glibc, harness settings": ("harness", "tcache-off"),
    "jemalloc (LD_PRELOAD)": ("plain", {"LD_PRELOAD": str(LIBS / "libjemalloc.so.2")}),
    "tcmalloc (LD_PRELOAD)": ("plain", {"LD_PRELOAD": str(LIBS / "libtcmalloc_minimal.so.4")}),
}


def one(name: str, size: str, precision: str, threads: int) -> dict:
    mode, extra = CONFIGS[name]
    base = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}
    env = without_tcache(base) if extra == "tcache-off" else {**base, **extra}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, mode, size, precision, str(threads)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="384x768")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    missing = [
        lib
        for _, (_, extra) in CONFIGS.items()
        if isinstance(extra, dict)
        for lib in extra.values()
        if not Path(lib).exists()
    ]
    if missing:
        sys.exit(
            f"benchmarks/allocators.py: missing {', '.join(missing)} (apt-get install libjemalloc2 libtcmalloc-minimal4)"
        )
    results: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.rounds):
        for precision in args.precisions.split(","):
            for name in CONFIGS:
                results.setdefault((name, precision), []).append(one(name, args.size, precision, args.threads))
    print(f"FlowCNRDB, fast backend, {args.size}, {args.threads} threads, {args.rounds} rounds of 3 timed forwards\n")
    print("| allocator | precision | median s | peak MB (largest) |\n|---|---|---|---|")
    for (name, precision), runs in results.items():
        seconds = statistics.median(t for r in runs for t in r["seconds"])
        print(f"| {name} | {precision} | {seconds:.2f} | {max(r['peak_mb'] for r in runs):.0f} |")


if __name__ == "__main__":
    main()
