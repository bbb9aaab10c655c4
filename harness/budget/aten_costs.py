"""The analytic counter's cost formulas, one per aten operator, in MACs.

One fused multiply-add is 1 MAC; any other arithmetic operation on one
element also counts 1. Each formula returns ``{category: MACs}`` for one call,
from the call's arguments and output (meta tensors: shapes only).

==================  ========================================================================
category            cost
==================  ========================================================================
conv, conv_same     output elements x (C_in / groups) x kernel elements (any padding mode:
                    padding is data movement); ``conv_same`` for modules built with
                    ``padding="same"`` (fvcore skips them)
conv_transpose      input elements x (C_out / groups) x kernel elements
linear              matrix products: m x n x k (mm, addmm, bmm, baddbmm)
bias                1 per output element of a convolution or addmm with a bias
attention           fused attention: 2 x B x H x L x S x E (QK^T and AV) + 5 per score (softmax)
layer_norm,         5 per element (mean, variance, subtract, divide, affine);
group_norm          batch_norm in inference (running statistics): 2 per element
activation          1 per element (SiLU, ReLU, GELU, sigmoid, tanh, ...)
elementwise         1 per output element (unary, binary and comparison operators, ``where``);
                    2 for fused ternary ones (addcmul, addcdiv, lerp)
reduction           1 per input element (sum, mean, max, ...); 2 for norms and variances
softmax             5 per element (max, subtract, exp, sum, divide)
cumsum              1 per element
pool                max: kernel elements - 1 per output element; average: kernel elements;
                    adaptive: 1 per input element
interpolate         per output element: nearest 0, (bi/tri)linear 2/4/8, bicubic 16
grid_sample         per output element: bilinear 4, nearest 0, bicubic 16
fft                 a transform of N points: N log2 N (one butterfly per point per stage),
                    halved for real input or output (rfft, irfft)
gather_scatter      gathers and indexing 0 (data movement); scatter-adds 1 per source element
data_movement       0: views, copies, concatenation, padding, pixel shuffle, constructors
==================  ========================================================================

Anything dispatched that is not listed here is never counted as zero in
silence: the counter lists it as uncounted, by name, with its calls and output
elements.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from math import prod
from typing import Any

import torch

Costs = dict[str, int]
Formula = Callable[[str, tuple[Any, ...], dict[str, Any], Any, bool], Costs]
"""``formula(operator name, args, kwargs, output, same_padding_module) -> {category: MACs}``."""

CATEGORIES = (
    "conv",
    "conv_same",
    "conv_transpose",
    "linear",
    "bias",
    "attention",
    "layer_norm",
    "group_norm",
    "batch_norm",
    "activation",
    "elementwise",
    "reduction",
    "softmax",
    "cumsum",
    "pool",
    "interpolate",
    "grid_sample",
    "fft",
    "gather_scatter",
    "data_movement",
)

FORMULAS: dict[str, Formula] = {}


def numel(t: Any) -> int:
    if isinstance(t, (tuple, list)):
        return numel(t[0]) if t else 0
    return prod(t.shape) if isinstance(t, torch.Tensor) else 0


def _formula(*names: str) -> Callable[[Formula], Formula]:
    def wrap(fn: Formula) -> Formula:
        for name in names:
            FORMULAS[name] = fn
        return fn

    return wrap


def _per_element(category: str, per: int, *names: str, source: str = "out") -> None:
    """Register ``per`` MACs per element of the output (or of the first input) for ``names``, in-place forms too."""

    def cost(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, same: bool) -> Costs:
        return {category: per * numel(args[0] if source == "input" else out)}

    for name in names:
        FORMULAS[name] = FORMULAS[name + "_"] = cost


@_formula("convolution", "_convolution", "convolution_overrideable", "_slow_conv2d_forward", "mkldnn_convolution")
def _convolution(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, same: bool) -> Costs:
    x, weight, bias = args[0], args[1], args[2] if len(args) > 2 else kwargs.get("bias")
    transposed = bool(args[6]) if len(args) > 6 else bool(kwargs.get("transposed", False))
    kernel = prod(weight.shape[2:])
    if transposed:  # weight (C_in, C_out / groups, k...)
        costs = {"conv_transpose": numel(x) * weight.shape[1] * kernel}
    else:  # weight (C_out, C_in / groups, k...)
        costs = {"conv_same" if same else "conv": numel(out) * weight.shape[1] * kernel}
    if bias is not None:
        costs["bias"] = numel(out)
    return costs


@_formula("mm", "bmm")
def _matmul(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, same: bool) -> Costs:
    return {"linear": numel(out) * args[0].shape[-1]}


@_formula("addmm", "baddbmm", "addbmm")
def _matmul_bias(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, same: bool) -> Costs:
    return {"linear": numel(out) * args[1].shape[-1], "bias": numel(out)}


@_formula(
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
)
def _attention(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, same: bool) -> Costs:
    q, k = args[0], args[1]
    scores = prod(q.shape[:-1]) * k.shape[-2]
    return {"attention": 2 * scores * q.shape[-1] + 5 * scores}


@_formula("native_layer_norm")
def _layer_norm(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, same: bool) -> Costs:
    return {"layer_norm": 5 * numel(out)}


@_formula("native_group_norm")
def _group_norm(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, same: bool) -> Costs:
    return {"group_norm": 5 * numel(out)}


@_formula("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_functional")
def _batch_norm_stats(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, same: bool) -> Costs:
    return {"batch_norm": 5 * numel(out)}


@_formula("_native_batch_norm_legit_no_training")
def _batch_norm_running(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, same: bool) -> Costs:
    return {"batch_norm": 2 * numel(out)}


_per_element(
    "activation",
    1,
    "silu",
    "relu",
    "gelu",
    "sigmoid",
    "tanh",
    "hardswish",
    "hardsigmoid",
    "leaky_relu",
    "elu",
    "softplus",
    "hardtanh",
    "mish",
    "relu6",
    "celu",
    "selu",
    "threshold",
    "_prelu_kernel",
    "log_sigmoid_forward",
)
_per_element(
    "elementwise",
    1,
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "sqrt",
    "rsqrt",
    "exp",
    "exp2",
    "expm1",
    "log",
    "log2",
    "log1p",
    "abs",
    "neg",
    "reciprocal",
    "clamp",
    "clamp_min",
    "clamp_max",
    "minimum",
    "maximum",
    "floor",
    "ceil",
    "round",
    "trunc",
    "frac",
    "remainder",
    "fmod",
    "sign",
    "sin",
    "cos",
    "tan",
    "atan",
    "atan2",
    "erf",
    "square",
    "eq",
    "ne",
    "lt",
    "gt",
    "le",
    "ge",
    "bitwise_and",
    "bitwise_or",
    "bitwise_not",
    "bitwise_xor",
    "logical_and",
    "logical_or",
    "logical_not",
    "logical_xor",
    "where",
    "masked_fill",
    "isnan",
    "isinf",
    "isfinite",
    "rsub",
    "native_dropout",
    "hypot",
    "nan_to_num",
    "angle",
    "real",
    "imag",
    "conj_physical",
    "sgn",
)
_per_element("elementwise", 2, "addcmul", "addcdiv", "lerp")
_per_element(
    "reduction",
    1,
    "sum",
    "mean",
    "amax",
    "amin",
    "max",
    "min",
    "prod",
    "argmax",
    "argmin",
    "any",
    "all",
    "nansum",
    "aminmax",
    source="input",
)
_per_element(
    "reduction", 2, "linalg_vector_norm", "norm", "var", "std", "var_mean", "std_mean", "logsumexp", source="input"
)
_per_element("softmax", 5, "_softmax", "_safe_softmax", "_log_softmax", source="input")
_per_element("cumsum", 1, "cumsum", "cumprod", "logcumsumexp", "cummax", "cummin")
_per_element(
    "pool",
    1,
    "_adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "_adaptive_avg_pool3d",
    "adaptive_max_pool3d",
    source="input",
)
_per_element(
    "gather_scatter",
    1,
    "scatter_add",
    "index_add",
    "scatter_reduce",
    "index_put",
    "_index_put_impl",
    "embedding_dense_backward",
    source="input",
)
_per_element(
    "gather_scatter",
    0,
    "gather",
    "index_select",
    "index",
    "take",
    "embedding",
    "masked_select",
    "nonzero",
    "scatter",
    "index_fill",
    "masked_scatter",
)


@_formula(
    "max_pool2d_with_indices",
    "max_pool2d",
    "max_pool3d_with_indices",
    "max_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "avg_pool1d",
)
def _pool(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, same: bool) -> Costs:
    k = args[1] if len(args) > 1 else kwargs["kernel_size"]
    k = list(k) if isinstance(k, (tuple, list)) else [int(k)]
    kernel = prod(k) if len(k) > 1 else k[0] ** (args[0].dim() - 2)
    return {"pool": numel(out) * (kernel - 1 if "max" in name else kernel)}


_INTERP_TAPS = {
    "upsample_nearest1d": 0,
    "upsample_nearest2d": 0,
    "upsample_nearest3d": 0,
    "_upsample_nearest_exact2d": 0,
    "upsample_linear1d": 2,
    "upsample_bilinear2d": 4,
    "_upsample_bilinear2d_aa": 4,
    "upsample_trilinear3d": 8,
    "upsample_bicubic2d": 16,
    "_upsample_bicubic2d_aa": 16,
}


@_formula(*_INTERP_TAPS)
def _interpolate(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, same: bool) -> Costs:
    return {"interpolate": _INTERP_TAPS[name] * numel(out)}


@_formula("grid_sampler_2d", "grid_sampler_3d", "_grid_sampler_2d_cpu_fallback")
def _grid_sample(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, same: bool) -> Costs:
    mode = int(args[2]) if len(args) > 2 else 0  # 0 bilinear, 1 nearest, 2 bicubic
    taps = {0: 4 if "2d" in name else 8, 1: 0, 2: 16}[mode]
    return {"grid_sample": taps * numel(out)}


@_formula("_fft_r2c", "_fft_c2r", "_fft_c2c")
def _fft(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, same: bool) -> Costs:
    x, dims = args[0], [d % args[0].dim() for d in args[1]]
    real = out if name == "_fft_c2r" else x  # the real-valued side gives the signal length
    n = prod(real.shape[d] for d in dims)
    transforms = numel(real) // max(n, 1)
    factor = 1.0 if name == "_fft_c2c" else 0.5
    return {"fft": int(round(factor * transforms * n * math.log2(n))) if n > 1 else 0}


DATA_MOVEMENT = (
    "device",  # reading a tensor's device: no arithmetic
    "view",
    "_unsafe_view",
    "reshape",
    "_reshape_alias",
    "permute",
    "transpose",
    "t",
    "expand",
    "slice",
    "select",
    "cat",
    "stack",
    "clone",
    "contiguous",
    "copy",
    "_to_copy",
    "to",
    "alias",
    "unsqueeze",
    "squeeze",
    "flatten",
    "unflatten",
    "pixel_shuffle",
    "pixel_unshuffle",
    "constant_pad_nd",
    "replication_pad1d",
    "replication_pad2d",
    "replication_pad3d",
    "reflection_pad1d",
    "reflection_pad2d",
    "reflection_pad3d",
    "empty",
    "empty_like",
    "empty_strided",
    "zeros",
    "zeros_like",
    "ones",
    "ones_like",
    "full",
    "full_like",
    "new_zeros",
    "new_ones",
    "new_empty",
    "new_full",
    "new_empty_strided",
    "arange",
    "eye",
    "linspace",
    "fill",
    "zero",
    "lift_fresh",
    "lift_fresh_copy",
    "detach",
    "split",
    "split_with_sizes",
    "chunk",
    "unbind",
    "narrow",
    "roll",
    "flip",
    "repeat",
    "tile",
    "as_strided",
    "diagonal",
    "tril",
    "triu",
    "scalar_tensor",
    "_local_scalar_dense",
    "unfold",
    "im2col",
    "view_as_real",
    "view_as_complex",
    "_conj",
    "resolve_conj",
    "resolve_neg",
    "_unsafe_index",
    "channel_shuffle",
    "movedim",
    "expand_as",
    "view_as",
    "set_",
    "randn",
    "rand",
    "randint",
    "normal",
    "bernoulli",
    "uniform",
    "item",
    "_assert_tensor_metadata",
    "copy_",
)
for _name in DATA_MOVEMENT:
    FORMULAS.setdefault(_name, lambda name, args, kwargs, out, same: {"data_movement": 0})


def cost(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, same_padding: bool) -> Costs | None:
    """The MACs of one call of aten operator ``name`` by category, or None when there is no formula."""
    formula = FORMULAS.get(name)
    if formula is None:
        return None
    return {k: int(v) for k, v in formula(name, args, kwargs, out, same_padding).items()}
