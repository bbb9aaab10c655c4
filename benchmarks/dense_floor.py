"""The floor under FlowCNRDB's CPU time: its matrix products and convolutions, each timed alone at its own shapes.

    python benchmarks/dense_floor.py [--size 384x768] [--model flowcnrdb] [--repeats 3]
        [--published PATH/Model_01_FlowCNRDB.py:FlowCNRDBModel]

Records every matrix product and convolution of one fast-path forward (seeded weights of realistic
scale, frames one after another), in float32 and, where the CPU has it, in bfloat16, through a
``TorchDispatchMode``: the operator, its scalar arguments and each tensor's shape, strides and
dtype. Each distinct call is then replayed alone on random tensors of that layout, best of
``--repeats`` after a warm-up, on all threads and on one (half of the one-thread time is what two
such calls side by side would take per call); the better of the two, times the number of such
calls, summed, is the time these operators need with nothing else to do and their inputs in
cache: a floor, not an estimate. Then the forwards themselves (``harness bench``, each in a fresh
process) and, with ``--published``, the published code's, and what follows for the speed goals:

- 10x the published code: the float32 floor against a tenth of the published code's time;
- bfloat16 1.8x float32: the fastest a forward could be if every one of float32's products and
  convolutions ran in bfloat16 at its floor (float32 forward - float32 floor + that floor), the
  rest of the work (GRN statistics, norms, residual streams: float32 by the goal's own terms) as
  it is today; and, the rest being the same float32 work in both, how small it would have to be
  for 1.8x.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict
from typing import Any

import torch
from precision import timed  # benchmarks/precision.py, beside this file
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from harness import create_model
from harness.allocator import keep_freed_memory, relaunch_without_tcache
from harness.backends.fast import fast_forward
from harness.backends.reduced import bfloat16_forward
from harness.budget.aten_costs import cost
from harness.challenge import parse_size
from harness.inference import cpu_has_bf16
from harness.models.flowcnrdb import FlowCNRDB
from harness.options import Precision

aten = torch.ops.aten
PRODUCTS = {aten.mm.default, aten.mm.out, aten.addmm.default, aten.addmm.out, aten.addmm_.default}
CONVOLUTIONS = {
    aten.conv2d.default,
    aten.conv2d.padding,
    aten.convolution.default,
}  # conv2d: what inference mode dispatches


def _fused_product() -> set[Any]:
    try:
        return {torch.ops.mkldnn._linear_pointwise.default}
    except (AttributeError, RuntimeError):
        return set()


DENSE = PRODUCTS | CONVOLUTIONS | _fused_product()
BF16_GOAL = 1.8  # bfloat16 against float32, the goal


class Layout:
    """A tensor's shape, strides and dtype: what a replay needs to rebuild it (values are random)."""

    def __init__(self, t: torch.Tensor) -> None:
        self.key = (tuple(t.shape), t.stride(), t.dtype)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def make(self, narrow: torch.dtype | None = None) -> torch.Tensor:
        """Random values in this layout; float32 becomes ``narrow`` where given."""
        shape, stride, dtype = self.key
        dtype = narrow if narrow is not None and dtype == torch.float32 else dtype
        return torch.empty_strided(shape, stride, dtype=dtype).normal_(0, 0.1)


Call = tuple[Any, tuple[Any, ...], tuple[tuple[str, Any], ...]]
"""(operator, its positional arguments and its keywords, each tensor as a :class:`Layout`)."""


class DenseCalls(TorchDispatchMode):
    """Counts the distinct dense calls of everything run under it, each with its MACs (the analytic counter's formulas)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[Call] = Counter()
        self.macs: dict[Call, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # torch's protocol
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in DENSE:
            key = tree_map(lambda a: Layout(a) if isinstance(a, torch.Tensor) else a, (args, kwargs))
            call = (func, _frozen(key[0]), tuple(sorted((k, _frozen(v)) for k, v in key[1].items())))
            self.calls[call] += 1
            self.macs.setdefault(call, _macs(func, args, kwargs, out))
        return out


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def _macs(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: torch.Tensor) -> int:
    """The multiply-accumulates of one call, by ``harness budget``'s formulas (bias additions left out)."""
    if func in CONVOLUTIONS:  # conv2d (inference mode's) as convolution: output elements x C_in / groups x kernel
        costs = cost("convolution", (args[0], args[1], None), {}, out, False)
    elif func in PRODUCTS:
        costs = cost(func._schema.name.split("::")[-1].rstrip("_"), args, kwargs, out, False)
    else:  # oneDNN's silu(x @ w.T + b): a product of x (..., k) into out (..., n)
        costs = cost("mm", (args[0],), {}, out, False)
    assert costs is not None
    return sum(v for k, v in costs.items() if k != "bias")


def _groups(func: Any, args: tuple[Any, ...]) -> int:
    """A recorded convolution's groups: conv2d's seventh argument (default 1), convolution's ninth."""
    i = 8 if func is aten.convolution.default else 6
    return int(args[i]) if len(args) > i else 1


def record(model_name: str, size: tuple[int, int], precision: Precision) -> DenseCalls:
    """The dense calls of one forward of ``model_name`` in ``precision``, as ``harness bench`` runs it.

    FlowCNRDB's frames go one after another: the mode sees the calling thread only.
    """
    torch.manual_seed(0)
    model = create_model(model_name).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    calls = DenseCalls()
    bf16 = precision is Precision.bf16
    if isinstance(model, FlowCNRDB):  # the fast backend, frames one after another
        forward = lambda x: fast_forward(model, x, torch.bfloat16 if bf16 else None)
    else:
        forward = bfloat16_forward(model) if bf16 else model
    with torch.inference_mode(), calls:
        forward(torch.rand(1, 9, *size))
    return calls


def best_time(
    func: Any,
    args: tuple[Any, ...],
    kwargs: tuple[tuple[str, Any], ...],
    threads: int,
    repeats: int,
    narrow: torch.dtype | None = None,
) -> float:
    """The best of ``repeats`` calls (after one warm-up) on ``threads`` threads, on random tensors of the recorded layouts."""
    made = tree_map(lambda a: a.make(narrow) if isinstance(a, Layout) else a, (list(args), dict(kwargs)))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        best = float("inf")
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            func(*made[0], **made[1])
            if i:
                best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return best


def floor(calls: DenseCalls, repeats: int, narrow: torch.dtype | None = None) -> dict[str, list[float]]:
    """Per group (products, fused products, convolutions): [calls, MACs, floor seconds]; float32 replayed as ``narrow``."""
    threads = torch.get_num_threads()
    groups: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    with torch.inference_mode():
        for call, count in calls.calls.items():
            func, args, kwargs = call
            alone = best_time(func, args, kwargs, threads, repeats, narrow)
            if threads > 1:  # two single-thread calls side by side, as stages 1 and 2 run their frames
                alone = min(alone, best_time(func, args, kwargs, 1, repeats, narrow) / threads)
            group = groups[_group(func, args)]
            group[0] += count
            group[1] += count * calls.macs[call]
            group[2] += count * alone
    return dict(groups)


def _group(func: Any, args: tuple[Any, ...]) -> str:
    if func in CONVOLUTIONS:
        return "depth-wise convolutions" if _groups(func, args) > 1 else "dense convolutions"
    return "matrix products" if func in PRODUCTS else "fused product-and-SiLU"


def print_floor(name: str, groups: dict[str, list[float]]) -> float:
    total = sum(g[2] for g in groups.values())
    print(f"\n{name}: dense operators alone\n\n| operators | calls | GMAC | floor s | GMAC/s |\n|---|---|---|---|---|")
    for group, (count, mac, seconds) in sorted(groups.items(), key=lambda kv: -kv[1][2]):
        print(f"| {group} | {count:.0f} | {mac / 1e9:.1f} | {seconds:.2f} | {mac / 1e9 / seconds:.0f} |")
    mac = sum(g[1] for g in groups.values())
    print(
        f"| all | {sum(g[0] for g in groups.values()):.0f} | {mac / 1e9:.1f} | **{total:.2f}** | {mac / 1e9 / total:.0f} |"
    )
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="384x768")
    parser.add_argument("--model", default="flowcnrdb")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--published", default=None, help="the published model as FILE.py:CLASS")
    args = parser.parse_args()
    relaunch_without_tcache()
    keep_freed_memory()
    size = parse_size(args.size)
    print(f"{args.model} 1x9x{size[0]}x{size[1]}, {torch.get_num_threads()} threads, {torch.__version__}")
    calls = record(args.model, size, Precision.fp32)
    floors = {Precision.fp32: print_floor("float32", floor(calls, args.repeats))}
    if cpu_has_bf16():
        floors[Precision.bf16] = print_floor(
            "bfloat16 as it runs", floor(record(args.model, size, Precision.bf16), args.repeats)
        )
        every = print_floor("float32's calls, every one in bfloat16", floor(calls, args.repeats, torch.bfloat16))
    seconds = {p: timed(args.model, size, p, args.repeats) for p in floors}
    print(
        "\n"
        + "\n".join(
            f"forward {p.value}: {s:.2f} s, of which the dense floor {floors[p]:.2f} s ({floors[p] / s:.0%})"
            for p, s in seconds.items()
        )
    )
    if Precision.bf16 in floors:
        fp32, bound = seconds[Precision.fp32], seconds[Precision.fp32] - floors[Precision.fp32] + every
        print(
            f"bfloat16: {fp32 / seconds[Precision.bf16]:.2f}x faster than float32; with every product and convolution"
            f" in bfloat16 at its floor and the rest as in float32, about {fp32 / bound:.2f}x ({bound:.2f} s)"
        )
        rest, need = fp32 - floors[Precision.fp32], (floors[Precision.fp32] - BF16_GOAL * every) / (BF16_GOAL - 1)
        print(
            f"  the rest, float32 in both: {rest:.2f} s; (rest + {floors[Precision.fp32]:.2f}) / (rest + {every:.2f}) is at"
            f" most {floors[Precision.fp32] / every:.2f}x (no rest at all), "
            + (f"{BF16_GOAL}x only with the rest under {need:.2f} s" if need > 0 else f"never {BF16_GOAL}x")
        )
    if args.published:
        published = timed(args.published, size, Precision.fp32, args.repeats)
        print(
            f"published: {published:.2f} s, {published / seconds[Precision.fp32]:.2f}x ours; 10x would be"
            f" {published / 10:.2f} s, the float32 dense floor alone is {floors[Precision.fp32]:.2f} s"
            f" (so in float32 at most {published / floors[Precision.fp32]:.2f}x faster than the published code)"
        )


if __name__ == "__main__":
    main()
