"""FlowCNRDB inference: seconds per image and peak memory, fast path versus the faithful eager path.

    python benchmarks/inference_speed.py [--size 768x1536] [--model flowcnrdb] [--threads N]

Each path runs in its own process (so peak memory is its own), under
``torch.inference_mode`` on random weights and inputs, and checks that the two
outputs agree. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from harness.allocator import without_tcache
from harness.cli.common import parse_size

CHILD = r"""
import json, sys, time, torch
from harness import create_model
from harness.allocator import keep_freed_memory
keep_freed_memory()  # as the harness's CLI does (the parent gives it glibc's thread cache off, as well)
name, h, w, fast, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5])
if threads:
    torch.set_num_threads(threads)
torch.manual_seed(0)
model = create_model(name).eval()
for p in model.parameters():
    torch.nn.init.normal_(p, std=0.02)
model.set_fast(fast)
x = torch.rand(1, 9, h, w)
with torch.inference_mode():
    t0 = time.perf_counter()
    out = model(x)
    seconds = time.perf_counter() - t0
torch.save(out, sys.argv[6])
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))  # ru_maxrss would carry the parent's peak
print(json.dumps({"seconds": seconds, "peak_gb": int(hwm.split()[1]) / 1024**2}))
"""


def run(model: str, h: int, w: int, fast: bool, threads: int, out: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", CHILD, model, str(h), str(w), "1" if fast else "0", str(threads), out],
                          capture_output=True, text=True, check=True, env=without_tcache(os.environ))  # as the harness's CLI runs
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    import tempfile

    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="768x1536")
    parser.add_argument("--model", default="flowcnrdb")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    h, w = parse_size(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        fast = run(args.model, h, w, True, args.threads, f"{tmp}/fast.pt")
        slow = run(args.model, h, w, False, args.threads, f"{tmp}/slow.pt")
        diff = (torch.load(f"{tmp}/fast.pt") - torch.load(f"{tmp}/slow.pt")).abs().max().item()
    print(f"{args.model} 1x9x{h}x{w}")
    print(f"  fast path      {fast['seconds']:8.2f} s/image   peak {fast['peak_gb']:.2f} GB")
    print(f"  faithful eager {slow['seconds']:8.2f} s/image   peak {slow['peak_gb']:.2f} GB")
    print(f"  speed-up {slow['seconds'] / fast['seconds']:.2f}x, max |difference| {diff:.2e}")


if __name__ == "__main__":
    main()
