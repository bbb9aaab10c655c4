"""Where FlowCNRDB's CPU inference spends its time: ``torch.profiler``'s self CPU time by operator.

    python benchmarks/profile_ops.py [--size 384x768] [--precision fp32|bf16] [--model flowcnrdb] [--top 12]

One warm-up forward, then one profiled forward (seeded weights of realistic scale, ``inference_mode``,
the harness's allocator settings). Prints a Markdown table of the operator groups (share of the
profiled time, milliseconds, calls) and the top operators. Profiling itself adds per-operator
overhead, so the total is above an unprofiled forward's. The profiler sees only the calling
thread, so FlowCNRDB's frames go through stages 1 and 2 one after another here
(``frame_threads = 1``), not side by side as in a plain forward.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from harness import create_model
from harness.allocator import keep_freed_memory, relaunch_without_tcache
from harness.backends.fast import fast_forward
from harness.challenge import parse_size
from harness.models.flowcnrdb import FlowCNRDB

GROUPS = {
    "matrix products (1x1 convolutions)": ("aten::addmm", "aten::mm", "aten::bmm"),
    "convolutions (depth-wise and dense)": ("aten::mkldnn_convolution", "aten::convolution", "aten::_convolution"),
    "copies and dtype or layout changes": (
        "aten::copy_",
        "aten::_to_copy",
        "aten::cat",
        "aten::clone",
        "aten::contiguous",
    ),
    "GRN window sums and normalisation": (
        "aten::add",
        "aten::add_",
        "aten::sub_",
        "aten::addcmul",
        "aten::addcmul_",
        "aten::sqrt_",
        "aten::clamp_min_",
        "aten::div_",
        "aten::mul_",
        "aten::sum",
        "aten::mean",
        "aten::linalg_vector_norm",
        "aten::zero_",
        "aten::fill_",
        "aten::cumsum",
    ),
    "LayerNorm": ("aten::native_layer_norm",),
    "SiLU": ("aten::silu_", "aten::silu"),
    "grid sampling (warp)": ("aten::grid_sampler_2d",),
    "slicing and views (Python dispatch)": (
        "aten::select",
        "aten::slice",
        "aten::as_strided",
        "aten::view",
        "aten::permute",
        "aten::narrow",
        "aten::empty",
        "aten::empty_strided",
        "aten::expand",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="384x768")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--model", default="flowcnrdb")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    relaunch_without_tcache()  # the allocator as the harness's CLI has it
    keep_freed_memory()
    h, w = parse_size(args.size)
    torch.manual_seed(0)
    model = create_model(args.model).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    dtype = torch.bfloat16 if args.precision == "bf16" else None
    # the fast backend with frames one after another: the profiler records the calling thread's operators only
    forward = (lambda t: fast_forward(model, t, dtype)) if isinstance(model, FlowCNRDB) else model
    x = torch.rand(1, 9, h, w)
    with torch.inference_mode():
        t0 = time.perf_counter()
        forward(x)
        plain = time.perf_counter() - t0
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            forward(x)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    group_of = {op: g for g, ops in GROUPS.items() for op in ops}
    ms, calls = defaultdict(float), defaultdict(int)
    for e in events:
        g = group_of.get(e.key, "other")
        ms[g] += e.self_cpu_time_total / 1e3
        calls[g] += e.count
    print(
        f"{args.model} 1x9x{h}x{w} {args.precision}: unprofiled forward {plain:.2f} s, "
        f"profiled self CPU time {total / 1e6:.2f} s over {torch.get_num_threads()} thread(s)\n"
    )
    print("| operator group | share | self CPU ms | calls |\n|---|---|---|---|")
    for g in sorted(ms, key=ms.get, reverse=True):
        print(f"| {g} | {100 * ms[g] * 1e3 / total:.1f}% | {ms[g]:.0f} | {calls[g]} |")
    print(f"\ntop {args.top} operators:")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
        print(f"  {e.key:28s} {e.self_cpu_time_total / 1e3:9.1f} ms {e.count:8d} calls")


if __name__ == "__main__":
    main()
