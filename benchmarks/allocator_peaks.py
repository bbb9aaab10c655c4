"""Peak memory of one forward, run after run, with glibc's thread cache and fast bins on and off.

    python benchmarks/allocator_peaks.py [--model flowcnrdb] [--size 384x768] [--precision bf16] [--runs 4]

Each run is a fresh process doing one forward (seeded weights, ``inference_mode``) and reporting its
time and its resident high-water mark. "cache on" is glibc's default for the two (``tcache_count=7``,
fast bins up to 128 bytes) beside the rest of :func:`harness.allocator.keep_freed_memory`; "harness"
is what the ``harness`` command runs with (both off, :mod:`harness.allocator` says why). The runs
alternate so that a change in the machine's load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from harness.allocator import TCACHE_COUNT, without_tcache

RUN = """
import ctypes, json, resource, sys, time
import torch
from harness import create_model
from harness.allocator import M_MXFAST, keep_freed_memory
from harness.backends import prepare_runner
from harness.inference import Precision
model, size, precision, cache_on = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
assert keep_freed_memory()
if cache_on:
    ctypes.CDLL("libc.so.6").mallopt(M_MXFAST, 128)  # glibc's default fast bins
torch.manual_seed(0)
net = create_model(model).eval()
for p in net.parameters():
    torch.nn.init.normal_(p, std=0.02)
h, w = (int(v) for v in size.split("x"))
x = torch.rand(1, 9, h, w)
run = prepare_runner(net, "auto", torch.device("cpu"), Precision(precision), (h, w)).prepared
t = time.perf_counter(); run(x); t = time.perf_counter() - t
print(json.dumps({"seconds": t, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def one_run(args: argparse.Namespace, cache_on: bool) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env = {**env, "GLIBC_TUNABLES": f"{TCACHE_COUNT}=7"} if cache_on else (without_tcache(env) or env)
    cmd = [sys.executable, "-c", RUN, args.model, args.size, args.precision, "1" if cache_on else "0"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flowcnrdb")
    parser.add_argument("--size", default="384x768")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"cache on": [], "harness": []}
    for i in range(args.runs):
        for name, cache_on in (("cache on", True), ("harness", False)):
            r = one_run(args, cache_on)
            results[name].append(r)
            print(f"run {i + 1} {name:>8}: {r['seconds']:.2f} s, peak {r['peak_mb']:.0f} MB", flush=True)
    for name, runs in results.items():
        peaks = sorted(r["peak_mb"] for r in runs)
        times = sorted(r["seconds"] for r in runs)
        print(
            f"{name:>8}: peak {peaks[0]:.0f}-{peaks[-1]:.0f} MB, time {times[0]:.2f}-{times[-1]:.2f} s over {len(runs)} runs "
            f"({args.model}, {args.size}, {args.precision})"
        )


if __name__ == "__main__":
    main()
