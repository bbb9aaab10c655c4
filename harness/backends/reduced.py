"""bfloat16 for any model, done right: weights and activations in bfloat16, channels-last, with float32 islands.

:func:`to_bfloat16` gives a bfloat16, channels-last copy of a model (the
original is untouched); :class:`Float32Islands` is a torch function mode under
which the operators that need float32 compute in float32: grid sampling (its
coordinates above all: bfloat16 holds no integer above 256 exactly), the
normalisations' statistics, norms, cumulative sums and softmax. Each island
casts its floating inputs to float32, runs, and casts its result back to the
input's dtype, so the rest of the model keeps one dtype; a convolution or
linear layer given an input of another dtype than its weight (a float32 warp
concatenated into its input, say) computes in its weight's dtype. The equivalence gate
(:mod:`harness.backends.gate`) decides whether a model's bfloat16 run is
accepted.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

ISLANDS: frozenset[Callable[..., Any]] = frozenset(
    {
        F.grid_sample,
        F.layer_norm,
        F.group_norm,
        F.batch_norm,
        F.instance_norm,
        F.normalize,
        F.softmax,
        F.log_softmax,
        torch.layer_norm,
        torch.group_norm,
        torch.batch_norm,
        torch.instance_norm,
        torch.grid_sampler,
        torch.linalg.vector_norm,
        torch.linalg.norm,
        torch.norm,
        Tensor.norm,
        torch.cumsum,
        Tensor.cumsum,
        torch.softmax,
        Tensor.softmax,
        torch.var,
        Tensor.var,
        torch.std,
        Tensor.std,
        torch.var_mean,
        torch.std_mean,
    }
)
"""The operators that run in float32 under :class:`Float32Islands` (grid sampling, norms, statistics, scans)."""

WEIGHTED: frozenset[Callable[..., Any]] = frozenset(
    {
        F.conv1d,
        F.conv2d,
        F.conv3d,
        F.conv_transpose1d,
        F.conv_transpose2d,
        F.conv_transpose3d,
        F.linear,
    }
)
"""The operators whose input takes their weight's dtype under :class:`Float32Islands` (a float32 island's result
that reaches a bfloat16 layer, through a concatenation say, computes in bfloat16 there)."""


def _widen(value: Any) -> Any:
    if isinstance(value, Tensor) and value.dtype in (torch.bfloat16, torch.float16):
        return value.float()
    if isinstance(value, (list, tuple)):
        return type(value)(_widen(v) for v in value)
    return value


def _narrow(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, Tensor) and value.is_floating_point():
        return value.to(dtype)
    if isinstance(value, tuple):
        return tuple(_narrow(v, dtype) for v in value)
    return value


def _reduced_dtype(args: Any, kwargs: dict[str, Any]) -> torch.dtype | None:
    for value in [*args, *kwargs.values()]:
        if isinstance(value, Tensor) and value.dtype in (torch.bfloat16, torch.float16):
            return value.dtype
    return None


class Float32Islands(TorchFunctionMode):
    """Inside the mode, each operator of :data:`ISLANDS` given a reduced-precision tensor computes in float32."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in WEIGHTED and len(args) >= 2 and isinstance(args[0], Tensor) and isinstance(args[1], Tensor):
            if args[0].is_floating_point() and args[0].dtype != args[1].dtype:
                args = (args[0].to(args[1].dtype), args[1], *args[2:])
            return func(*args, **kwargs)
        if func not in ISLANDS:
            return func(*args, **kwargs)
        dtype = _reduced_dtype(args, kwargs)
        if dtype is None:
            return func(*args, **kwargs)
        out = func(*_widen(args), **{k: _widen(v) for k, v in kwargs.items()})
        return _narrow(out, dtype)


def to_bfloat16(model: nn.Module) -> nn.Module:
    """A bfloat16, channels-last copy of ``model`` (parameters and buffers); ``model`` is left as it was."""
    twin = copy.deepcopy(model)
    return twin.to(dtype=torch.bfloat16, memory_format=torch.channels_last)  # type: ignore[call-overload]  # Module.to takes it


def bfloat16_forward(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """A function of a float32 burst that runs ``model``'s bfloat16 copy on it under :class:`Float32Islands`."""
    twin = to_bfloat16(model)

    def forward(burst: Tensor) -> Tensor:
        x = burst.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        with Float32Islands():
            return twin(x)

    return forward
