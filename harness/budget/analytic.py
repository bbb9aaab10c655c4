"""The analytic counter, for any model: every aten operator the model dispatches, costed by formula.

The model runs once on abstract CPU tensors (no memory, no arithmetic) under a
:class:`torch.utils.flop_counter.FlopCounterMode` whose per-operator hook is
ours: each call is costed by :mod:`harness.budget.aten_costs` (the cost model
and its table are there) and attributed to the innermost module running it.
An operator without a formula is never silently zero: it is listed as
uncounted with its calls and output elements, and the strict verdict cannot
be decided while anything is uncounted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from harness.budget.aten_costs import CATEGORIES, cost, numel

__all__ = ["CATEGORIES", "AnalyticCount", "analytic_count"]


@dataclass
class OpRecord:
    calls: int = 0
    elements: int = 0
    macs: int = 0
    categories: Counter[str] = field(default_factory=Counter)


@dataclass
class AnalyticCount:
    by_category: Counter[str] = field(default_factory=Counter)
    by_module: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    by_op: dict[str, OpRecord] = field(default_factory=dict)
    uncounted: dict[str, OpRecord] = field(default_factory=dict)
    same_padding_convs: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return int(sum(self.by_category.values()))

    def uncounted_ops(self) -> list[dict[str, Any]]:
        """Operators without a formula: ``{"op", "calls", "elements"}`` each."""
        return [{"op": op, "calls": r.calls, "elements": r.elements} for op, r in sorted(self.uncounted.items())]

    def ops_in(self, categories: set[str]) -> list[dict[str, Any]]:
        """Operators whose cost falls (wholly or partly) in ``categories``, with their calls and output elements."""
        return [
            {"op": op, "calls": r.calls, "elements": r.elements}
            for op, r in sorted(self.by_op.items())
            if any(c in categories and v for c, v in r.categories.items())
        ]


class _CostMode(FlopCounterMode):
    """FlopCounterMode with our cost model in place of its formulas, and every operator seen."""

    def __init__(self, count: AnalyticCount, same_padding: set[str]) -> None:
        super().__init__(display=False)
        self.count = count
        self.same_padding = same_padding

    def _count_flops(self, func_packet: Any, out: Any, args: Any, kwargs: Any) -> Any:
        name = str(func_packet).split(".", 1)[-1]
        module = _module_path(max(self.mod_tracker.parents, key=len, default="Global"))
        costs = cost(name, args, kwargs, out, module in self.same_padding)
        book = self.count.uncounted if costs is None else self.count.by_op
        record = book.setdefault(name, OpRecord())
        record.calls += 1
        record.elements += numel(out)
        for category, macs in (costs or {}).items():
            record.macs += macs
            record.categories[category] += macs
            self.count.by_category[category] += macs
            self.count.by_module[module][category] += macs
            if category == "conv_same" and module not in self.count.same_padding_convs:
                self.count.same_padding_convs.append(module)
        return out


def _module_path(tracked: str) -> str:
    """ModuleTracker's ``Root.a.b`` as the model's own ``a.b`` (``""`` for the root; ``Global`` outside any module)."""
    return tracked if tracked == "Global" else tracked.partition(".")[2]


def _same_padding(model: nn.Module) -> set[str]:
    return {name for name, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd) and m.padding == "same"}


def analytic_count(model: nn.Module, input_shape: tuple[int, ...]) -> AnalyticCount:
    """Count ``model`` at ``input_shape`` on abstract CPU tensors (the model is not changed)."""
    from harness.budget.counters import abstract_cpu, counting_copy

    copy = counting_copy(model)
    count = AnalyticCount()
    with abstract_cpu(), _CostMode(count, _same_padding(copy)):
        copy(torch.empty(input_shape))
    return count
