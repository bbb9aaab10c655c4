"""The fast backend (FlowCNRDB's CPU path) against the model as written."""

from __future__ import annotations

import platform
import threading

import pytest
import torch
from torch.overrides import TorchFunctionMode

from harness import create_model
from harness.backends import flowcnrdb_kernels as kernels
from harness.backends.fast import fast_forward, one_image_strides, run_side_by_side
from harness.backends.flowcnrdb_kernels import Compute, convnext_fast, fold_projection, grn_channels_last_
from harness.models.flowcnrdb import GRN, ConvNeXtBlock, DenseLayer, FlowCNRDB, FlowCNRDBConfig


def _randomise(model: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    torch.manual_seed(0)
    for p in model.parameters():  # GRN gamma/beta and zero-initialised layers too, so every path matters
        torch.nn.init.normal_(p, std=std)
    return model


def _close(fast: dict[str, torch.Tensor], slow: dict[str, torch.Tensor], tol: float = 1e-4) -> None:
    for key in slow:
        scale = slow[key].abs().max().clamp_min(1.0)
        assert (fast[key] - slow[key]).abs().max() / scale < tol, key


@pytest.mark.parametrize(
    "shape,window",
    [((8, 8), 8), ((6, 5), 8), ((13, 9), 8), ((9, 13), 8), ((8, 30), 8), ((31, 7), 8), ((17, 17), 4), ((20, 40), 20)],
    ids=[
        "global",
        "global-small",
        "both-windowed-odd",
        "both-windowed-odd-t",
        "k-spans-h",
        "k-spans-w",
        "small-window",
        "even",
    ],
)
def test_grn_channels_last_matches_the_module(shape, window):
    grn = GRN(6, window)
    torch.nn.init.normal_(grn.gamma)
    torch.nn.init.normal_(grn.beta)
    x = torch.randn(2, 6, *shape)
    with torch.no_grad():
        want = grn(x)
        got = grn_channels_last_(grn, x.permute(0, 2, 3, 1).clone()).permute(0, 3, 1, 2)
    assert (got - want).abs().max() < 1e-5


@pytest.mark.parametrize(
    ("shape", "window"), [((40, 48), 16), ((23, 64), 8), ((30, 20), 8)], ids=["even", "odd-rows", "k-spans-w"]
)
def test_grn_statistics_in_chunks_of_rows_give_the_bits_of_one_piece(monkeypatch, shape, window):
    grn = GRN(5, window)
    torch.nn.init.normal_(grn.gamma)
    torch.nn.init.normal_(grn.beta)
    rows = torch.randn(1, 5, *shape).permute(0, 2, 3, 1).contiguous()
    with torch.no_grad():
        whole = kernels.grn_scale(grn, rows)
        for per_chunk in (1, 2, 7):  # each chunk keeps the last row sum of the one before for the sliding window
            monkeypatch.setattr(kernels, "GRN_CHUNK_BYTES", per_chunk * rows[:, 0].nbytes)
            assert torch.equal(kernels.grn_scale(grn, rows), whole), per_chunk


@pytest.mark.parametrize(
    ("shape", "k"),
    [((1, 5, 768, 3), 128), ((2, 3, 40, 4), 8), ((1, 2, 64, 3), 32), ((1, 3, 37, 2), 5), ((1, 4, 24, 2), 24)],
)
def test_column_window_sums_equal_summing_every_window(shape, k):
    x = torch.rand(shape, dtype=torch.float64)
    want = x.unfold(-2, k, 1).sum(-1)
    got = kernels.column_window_sums_(x.clone(), k)
    assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "size", [(64, 320), (96, 64), (32, 32)], ids=["windowed-odd-remainder", "windowed-deep-levels", "global"]
)
def test_fast_equals_the_published_forward_in_the_published_config(size):
    model = _randomise(create_model("flowcnrdb"), std=0.05).eval()
    x = torch.rand(1, 9, *size)
    with torch.inference_mode():
        _close(fast_forward(model, x, return_intermediates=True), model(x, return_intermediates=True))


def _flowcnrdb_variants() -> list[str]:
    from harness.registry import list_models

    return [name for name in list_models() if isinstance(create_model(name), FlowCNRDB)]


def test_every_flowcnrdb_variant_is_covered():
    names = _flowcnrdb_variants()
    assert len(names) >= 6 and {create_model(n).config.align for n in names} == {"flow", "none", "homography"}
    assert {create_model(n).config.append_mask for n in names} == {True, False}


@pytest.mark.parametrize("name", _flowcnrdb_variants())
def test_fast_equals_the_published_forward_for_every_variant(name):
    model = _randomise(create_model(name), std=0.05).eval()
    x = torch.rand(1, 9, 64, model.config.train_size + 64)  # wider than the training crop: windowed GRNs
    with torch.inference_mode():
        _close(fast_forward(model, x, return_intermediates=True), model(x, return_intermediates=True))


def test_fast_equals_the_published_forward_for_a_batch_of_two_and_with_reference_weights(shared_fixtures):
    model = _randomise(create_model("flowcnrdb_tiny"), std=0.05).eval()
    x = torch.rand(2, 9, 64, 320)
    with torch.inference_mode():
        fast, slow, alone = fast_forward(model, x), model(x), fast_forward(model, x[1:])
    assert (fast - slow).abs().max() / slow.abs().max().clamp_min(1.0) < 1e-4
    assert (fast[1:] - alone).abs().max() < 1e-5
    ref = torch.load(shared_fixtures / "flowcnrdb_reference_tiny.pt", weights_only=True)
    model = FlowCNRDB(FlowCNRDBConfig(**ref["config"])).eval()
    model.load_state_dict(ref["state_dict"], strict=True)
    x = torch.rand(1, 9, 96, 224) * 2
    with torch.inference_mode():
        assert (fast_forward(model, x) - model(x)).abs().max() < 1e-4


def _input_dtypes(run, x: torch.Tensor) -> dict[str, set[torch.dtype]]:
    """The dtypes of the first tensor argument of every aten operator one forward dispatches."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: dict[str, set[torch.dtype]] = {}

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            first = next((a for a in args if isinstance(a, torch.Tensor) and a.dim() > 1), None)
            if first is not None:
                seen.setdefault(func.__name__.split(".")[0], set()).add(first.dtype)
            return func(*args, **(kwargs or {}))

    with torch.inference_mode(), Record():
        run(x)
    return seen


def test_bf16_runs_matrix_products_in_bf16_and_keeps_norms_grn_statistics_and_warp_in_float32():
    model = _randomise(create_model("flowcnrdb_tiny"), std=0.05).eval()
    x = torch.rand(1, 9, 64, 320)
    with torch.inference_mode():
        want = model(x)
        got = fast_forward(model, x, torch.bfloat16)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    assert 0 < (got - want).abs().max() < 0.02 * want.abs().max()
    seen = _input_dtypes(lambda t: fast_forward(model, t, torch.bfloat16), x)
    assert torch.bfloat16 in seen["addmm"] and torch.bfloat16 in seen["conv2d"]
    for op in (
        "layer_norm",
        "grid_sampler",
        "addcmul",
        "addcmul_",
        "sqrt_",
        "mean",
        "div_",
    ):  # norms, GRN statistics, warp
        assert seen[op] == {torch.float32}, op
    assert torch.bfloat16 not in set().union(*_input_dtypes(lambda t: fast_forward(model, t), x).values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_poisoned_fresh_buffers_never_reach_the_output(dtype):
    """Every uninitialised buffer filled with NaN (torch's deterministic mode does that): the output is finite and the same.

    On a CPU with AMX, oneDNN's bfloat16 product reads the columns past K of a
    strided slice (oneDNN issue 5717): without contiguous operands and a zeroed
    dense buffer, the NaN there reaches the output.
    """
    model = _randomise(create_model("flowcnrdb_tiny"), std=0.05).eval()
    x = torch.rand(1, 9, 64, 320)
    with torch.inference_mode():
        clean = fast_forward(model, x, dtype)
    before = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = True
        assert torch.empty(3).isnan().all()  # the poison is on
        with torch.inference_mode():
            poisoned = fast_forward(model, x, dtype)
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.utils.deterministic.fill_uninitialized_memory = before[1]
    assert torch.isfinite(poisoned).all() and torch.equal(poisoned, clean)


def test_a_strided_bfloat16_slice_with_nan_beyond_k_gives_a_finite_product():
    """The upstream reproduction (oneDNN issue 5717), through the kernels' product: finite on every CPU."""
    buf = torch.randn(5120, 96).bfloat16()
    buf[:, 80:] = float("nan")
    w = torch.randn(32, 80).bfloat16()
    out = torch.empty(5120, 32, dtype=torch.bfloat16)
    got = kernels.product_into(buf[:, :80], w, None, out)
    assert torch.isfinite(got).all()
    assert torch.allclose(got.float(), buf[:, :80].float() @ w.float().t(), rtol=0.02, atol=0.5)
    compute = Compute(torch.bfloat16, torch.float32)
    conv = torch.nn.Conv2d(80, 32, 1).bfloat16().requires_grad_(False)
    wide = torch.empty(5120, 32)
    assert torch.isfinite(compute.linear_into(conv, buf[:, :80], wide)).all()


def test_bf16_matrix_products_in_row_chunks_compute_the_same(monkeypatch):
    model = _randomise(create_model("flowcnrdb_tiny"), std=0.05).eval()
    x = torch.rand(1, 9, 64, 320)
    with torch.inference_mode():
        whole = fast_forward(model, x, torch.bfloat16)
        monkeypatch.setattr(Compute, "REDUCED_ROWS", 1000)  # 5120 pixels per latent map: six chunks, the last one short
        chunked = fast_forward(model, x, torch.bfloat16)
    assert torch.allclose(chunked, whole, rtol=0, atol=1e-3 * whole.abs().max().item())


def test_products_and_projections_in_pieces_give_the_bits_of_one_piece(monkeypatch):
    model = _randomise(create_model("flowcnrdb"), std=0.05).eval()
    x = torch.rand(1, 9, 64, 320)
    with torch.inference_mode():
        monkeypatch.setattr(Compute, "ROWS", 1 << 30)
        monkeypatch.setattr(kernels, "PROJECT_PIXELS", 1 << 30)
        whole = fast_forward(model, x, return_intermediates=True)
        monkeypatch.setattr(Compute, "ROWS", 700)  # 5120 pixels per latent map: eight pieces, the last one short
        monkeypatch.setattr(kernels, "PROJECT_PIXELS", 480)  # three rows of 160 at a time
        pieces = fast_forward(model, x, return_intermediates=True)
    for key in whole:
        assert torch.equal(pieces[key], whole[key]), key


def test_a_cnrdb_layer_folds_projection_residual_and_output_conv_into_two_products():
    layer = _randomise(DenseLayer(96, 64, 32, 7, 2.0, 16, 0.0), std=0.1).eval()
    _, block, out, _ = layer
    y = torch.randn(1, 64, 40, 48).contiguous(memory_format=torch.channels_last)
    into = torch.full((1, 40, 48, 32), float("nan"))
    with torch.inference_mode():
        unfolded = torch.nn.functional.silu(out(block(y)))
        folded = convnext_fast(block, y, Compute(torch.float32, torch.float32), then=(out, into))
        one = fold_projection(block.block[6], out, torch.float32)
    assert folded.data_ptr() == into.data_ptr() and folded.shape == (1, 32, 40, 48)
    assert (folded - unfolded).abs().max() <= 1e-5 * unfolded.abs().max()
    w2, wc = block.block[6].weight.flatten(1).double(), out.weight.flatten(1).double()
    assert torch.equal(one[0], (wc @ w2).float()) and one[0].shape == (32, 128)


class ConvCalls(TorchFunctionMode):
    """Records (batch, channels) of every 2-D convolution whose weight is ``weight``, or its reference or frame half."""

    def __init__(self, weight: torch.Tensor, c: int) -> None:
        super().__init__()
        self.parts = [weight, weight[:, :c], weight[:, c:]]
        self.calls: list[tuple[int, int]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.conv2d or func is torch.conv2d:
            w = args[1] if len(args) > 1 else (kwargs or {})["weight"]
            if any(w.shape == p.shape and torch.equal(w.float(), p.float()) for p in self.parts):
                self.calls.append((args[0].shape[0], args[0].shape[1]))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["flowcnrdb_tiny", "flowcnrdb_homography"])
def test_stage_2_convolves_the_reference_once_per_burst_and_each_frame_alone(name):
    model = _randomise(create_model(name), std=0.05).eval()
    conv = model.reg_model.unet.conv_in
    c = model.config.stem_width
    x = torch.rand(2, 9, 64, 64)
    with torch.inference_mode(), ConvCalls(conv.weight, c) as seen:
        fast = fast_forward(model, x)
    assert seen.calls == [(2, c)] + [(2, c)] * 9  # the reference of each burst, then frame by frame
    with torch.inference_mode(), ConvCalls(conv.weight, c) as seen:
        slow = model(x)
    assert seen.calls == [(18, 2 * c)]  # the published forward: the concatenation, all frames at once
    assert (fast - slow).abs().max() < 1e-4


def test_one_image_strides_is_the_same_memory_with_the_dense_batch_stride():
    dense = torch.rand(1, 6, 8, 4).contiguous(memory_format=torch.channels_last)
    split_and_merged = dense.unflatten(0, (1, 1)).flatten(0, 1)  # a burst's (B, frames) view, as stage 2 gets it
    assert split_and_merged.stride() == (6, 1, 24, 6)
    fixed = one_image_strides(split_and_merged)
    assert fixed.stride() == dense.stride() and fixed.data_ptr() == dense.data_ptr() and torch.equal(fixed, dense)
    assert one_image_strides(dense) is dense
    planar = torch.rand(1, 6, 8, 4)
    assert one_image_strides(planar) is planar


@pytest.mark.parametrize("precision", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("available", [True, False], ids=["fused", "without-onednn"])
def test_expansions_go_through_onednns_fused_silu_where_it_pays(monkeypatch, available, precision):
    """Float32: every expansion of stages 1 and 2 (a whole frame at once), stage 3's none; bfloat16: every expansion."""
    from harness.backends import fast as fast_module
    from harness.inference import cpu_has_bf16

    if precision is torch.bfloat16 and not cpu_has_bf16():
        pytest.skip("this CPU has no native bfloat16 (the harness refuses --precision bf16 there)")
    if available and not kernels.fused_expansion_works(precision):
        assert platform.machine() not in ("x86_64", "AMD64"), "x86 builds of torch have oneDNN's fused product-and-SiLU"
        pytest.skip("this torch build has no oneDNN fused product-and-SiLU")
    monkeypatch.setattr(fast_module, "fused_expansion_works", lambda dtype=torch.float32: available)
    calls: list[tuple[torch.Size, torch.dtype]] = []
    fused_product = kernels.fused_silu_product
    monkeypatch.setattr(
        kernels, "fused_silu_product", lambda x, w, b: calls.append((x.shape, x.dtype)) or fused_product(x, w, b)
    )
    model = _randomise(create_model("flowcnrdb_tiny"), std=0.05).eval()
    x = torch.rand(1, 9, 64, 128)
    with torch.inference_mode():
        fast = fast_forward(model, x, precision)
        slow = model(x)
    per_frame = sum(isinstance(m, ConvNeXtBlock) for part in (model.stem, model.reg_model) for m in part.modules())
    merge = sum(isinstance(m, ConvNeXtBlock) for m in model.merge_model.modules())
    if not available:
        assert calls == []
    elif precision is torch.float32:
        assert len(calls) == 9 * per_frame and all(shape[0] == 1 and len(shape) == 4 for shape, _ in calls)
    else:
        assert len(calls) == 9 * per_frame + merge and all(
            len(shape) == 2 and d == torch.bfloat16 for shape, d in calls
        )
    assert (fast - slow).abs().max() < (1e-4 if precision is torch.float32 else 0.02 * slow.abs().max())


def test_the_fused_expansion_probe_says_no_where_onednn_fails(monkeypatch):
    def broken(*args: object) -> torch.Tensor:
        raise RuntimeError("mkldnn_linear_pointwise: not compiled with oneDNN")

    monkeypatch.setattr(kernels, "fused_silu_product", broken)
    assert kernels.probe_fused_expansion() is False
    monkeypatch.setattr(kernels, "fused_silu_product", torch.nn.functional.linear)  # no SiLU
    assert kernels.probe_fused_expansion() is False
    monkeypatch.undo()
    assert kernels.probe_fused_expansion() is True


def test_frames_go_side_by_side_on_single_threads_and_the_callers_count_comes_back():
    model = _randomise(create_model("flowcnrdb"), std=0.05).eval()
    stems: list[tuple[str, int]] = []
    model.stem.patch.register_forward_pre_hook(
        lambda m, a: stems.append((threading.current_thread().name, torch.get_num_threads()))
    )
    x = torch.rand(1, 9, 64, 320)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():  # grad mode, not inference mode: each worker takes the caller's
            fast = fast_forward(model, x, workers=2, return_intermediates=True)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    side = [n for name, n in stems if name.startswith("burst-frames")]
    assert len(stems) == 9 and len(side) == 8 and set(side) == {1} and stems[0][0] == threading.main_thread().name
    with torch.no_grad():
        _close(fast, model(x, return_intermediates=True))


def test_side_by_side_steps_keep_their_order_and_the_callers_modes_and_restore_the_thread_count():
    def first(i: int) -> tuple[int, str, int]:
        return i, threading.current_thread().name, torch.get_num_threads()

    def then(i: int, f: tuple[int, str, int]) -> tuple[int, tuple[int, str, int], str, bool, int]:
        return i, f, threading.current_thread().name, torch.is_inference_mode_enabled(), torch.get_num_threads()

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    main = threading.main_thread().name
    try:
        with torch.inference_mode():
            seen = run_side_by_side(first, then, range(0, 9, 2), 2)
        assert [s[0] for s in seen] == [0, 2, 4, 6, 8] and all(s[3] for s in seen)
        assert [s[4] for s in seen] == [
            1,
            1,
            1,
            1,
            2,
        ]  # the fifth step does not fill a round: its second part on the caller's threads
        assert [s[2] == main for s in seen] == [False] * 4 + [True]

        def fails(i: int, f: object) -> int:
            if i == 3:
                raise ValueError("frame 3")
            return i

        with pytest.raises(ValueError, match="frame 3"):
            run_side_by_side(lambda i: i, fails, range(6), 2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", [None, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize(("name", "size"), [("flowcnrdb", (128, 256)), ("flowcnrdb_tiny", (256, 512))])
def test_the_same_settings_give_the_same_bits_and_thread_counts_stay_within_the_gate(name, size, dtype):
    """Same dtype, workers and thread count: identical bits, run after run. Across thread counts and worker
    arrangements matrix products may split their sums differently: the outputs stay within the gate's 1e-4."""
    from harness.inference import cpu_has_bf16

    if dtype is not None and not cpu_has_bf16():
        pytest.skip("this CPU has no native bfloat16")
    model = _randomise(create_model(name), std=0.05).eval()
    torch.manual_seed(1)
    x = torch.rand(1, 9, *size) * 2
    before = torch.get_num_threads()
    runs = {}
    try:
        for threads, workers in ((2, 2), (2, 2), (1, 1), (2, 1)):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                runs.setdefault((threads, workers), []).append(fast_forward(model, x, dtype, workers))
    finally:
        torch.set_num_threads(before)
    a, b = runs[(2, 2)]
    assert torch.equal(a, b)
    tol = 1e-4 if dtype is None else 2e-2 * a.abs().max().item()
    for other in (runs[(1, 1)][0], runs[(2, 1)][0]):
        assert (other - a).abs().max() <= tol
