"""The fast inference path against the faithful computation (issue: speed)."""

from __future__ import annotations

import platform

import pytest
import torch

from harness import create_model
from harness.models.flowcnrdb import GRN, FlowCNRDB, FlowCNRDBConfig, grn_channels_last_


def _randomise(model: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    torch.manual_seed(0)
    for p in model.parameters():  # GRN gamma/beta and zero-initialised layers too, so every path matters
        torch.nn.init.normal_(p, std=std)
    return model


@pytest.mark.parametrize(
    "shape,window",
    [((8, 8), 8), ((6, 5), 8), ((13, 9), 8), ((9, 13), 8), ((8, 30), 8), ((31, 7), 8), ((17, 17), 4), ((20, 40), 20)],
    ids=["global", "global-small", "both-windowed-odd", "both-windowed-odd-t", "k-spans-h", "k-spans-w", "small-window", "even"],
)
def test_grn_channels_last_matches_faithful(shape, window):
    grn = GRN(6, window)
    torch.nn.init.normal_(grn.gamma)
    torch.nn.init.normal_(grn.beta)
    x = torch.randn(2, 6, *shape)
    with torch.no_grad():
        want = grn(x)
        got = grn_channels_last_(grn, x.permute(0, 2, 3, 1).clone()).permute(0, 3, 1, 2)
    assert (got - want).abs().max() < 1e-5


@pytest.mark.parametrize(("shape", "window"), [((40, 48), 16), ((23, 64), 8), ((30, 20), 8)], ids=["even", "odd-rows", "k-spans-w"])
def test_grn_statistics_in_chunks_of_rows_give_the_bits_of_one_piece(monkeypatch, shape, window):
    """Large maps go through the window sums a few rows at a time (cache-sized chunks); the chunking moves no bit."""
    from harness.models import flowcnrdb

    grn = GRN(5, window)
    torch.nn.init.normal_(grn.gamma)
    torch.nn.init.normal_(grn.beta)
    x = torch.randn(1, 5, *shape)
    rows = x.permute(0, 2, 3, 1).contiguous()
    with torch.no_grad():
        whole = flowcnrdb.grn_scale(grn, rows)
        row_bytes = rows[:, 0].nbytes
        for per_chunk in (1, 2, 7):  # each chunk keeps the last row sum of the one before for the sliding window
            monkeypatch.setattr(flowcnrdb, "GRN_CHUNK_BYTES", per_chunk * row_bytes)
            assert torch.equal(flowcnrdb.grn_scale(grn, rows), whole), per_chunk
        got = grn_channels_last_(grn, rows.clone()).permute(0, 3, 1, 2)
        assert (got - grn(x)).abs().max() < 1e-5


@pytest.mark.parametrize("size", [(64, 320), (96, 64), (32, 32)], ids=["windowed-odd-remainder", "windowed-deep-levels", "global"])
def test_fast_equals_faithful_published_config(size):
    model = _randomise(create_model("flowcnrdb"), std=0.05).eval()
    x = torch.rand(1, 9, *size)
    with torch.no_grad():
        fast = model(x, return_intermediates=True)
        slow = model.set_fast(False)(x, return_intermediates=True)
    for name in fast:
        scale = slow[name].abs().max().clamp_min(1.0)
        assert (fast[name] - slow[name]).abs().max() / scale < 1e-4, name


def test_fast_equals_faithful_for_a_batch_of_two():
    """Batches keep each map in one piece (a piece of rows of a batch is no single matrix) and still match."""
    model = _randomise(create_model("flowcnrdb_tiny"), std=0.05).eval()
    x = torch.rand(2, 9, 64, 320)
    with torch.no_grad():
        fast = model(x)
        slow = model.set_fast(False)(x)
        alone = model.set_fast(True)(x[1:])
    scale = slow.abs().max().clamp_min(1.0)
    assert (fast - slow).abs().max() / scale < 1e-4
    assert (fast[1:] - alone).abs().max() / scale < 1e-5


def test_fast_equals_faithful_with_reference_weights(shared_fixtures):
    ref = torch.load(shared_fixtures / "flowcnrdb_reference_tiny.pt", weights_only=True)
    model = FlowCNRDB(FlowCNRDBConfig(**ref["config"])).eval()
    model.load_state_dict(ref["state_dict"], strict=True)
    x = torch.rand(1, 9, 96, 224) * 2
    with torch.inference_mode():
        fast = model(x)
        slow = model.set_fast(False)(x)
    assert (fast - slow).abs().max() < 1e-4


def test_training_path_is_the_faithful_one_with_autograd_and_dropout():
    model = _randomise(create_model("flowcnrdb_tiny"), std=0.1)
    x = torch.rand(1, 9, 64, 64)
    model.eval()
    with torch.no_grad():
        fast = model(x)
    slow = model(x)  # autograd on: the faithful path
    assert torch.allclose(fast, slow.detach(), atol=1e-4)
    slow.mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.train()
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(2)
    b = model(x)
    assert not torch.equal(a, b)  # dropout acts in training


def _flowcnrdb_variants() -> list[str]:
    from harness.registry import list_models

    return [name for name in list_models() if isinstance(create_model(name), FlowCNRDB)]


def test_every_flowcnrdb_variant_is_covered():
    names = _flowcnrdb_variants()
    assert len(names) >= 6 and {create_model(n).config.align for n in names} == {"flow", "none", "homography"}
    assert {create_model(n).config.append_mask for n in names} == {True, False}


@pytest.mark.parametrize("name", _flowcnrdb_variants())
def test_fast_equals_faithful_for_every_variant(name):
    model = _randomise(create_model(name), std=0.05).eval()
    x = torch.rand(1, 9, 64, model.config.train_size + 64)  # wider than the training crop: windowed GRNs
    with torch.inference_mode():
        fast = model(x, return_intermediates=True)
        slow = model.set_fast(False)(x, return_intermediates=True)
    for key in fast:
        scale = slow[key].abs().max().clamp_min(1.0)
        assert (fast[key] - slow[key]).abs().max() / scale < 1e-4, (name, key)


@pytest.mark.parametrize(("shape", "k"), [((1, 5, 768, 3), 128), ((2, 3, 40, 4), 8), ((1, 2, 64, 3), 32), ((1, 3, 37, 2), 5), ((1, 4, 24, 2), 24)])
def test_column_window_sums_equal_summing_every_window(shape, k):
    """Block sums and steps, written over their input (a view of it is returned), or a cumulative sum where no block size fits."""
    from harness.models.flowcnrdb import _column_window_sums_

    x = torch.rand(shape, dtype=torch.float64)
    want = x.unfold(-2, k, 1).sum(-1)  # every window of k columns, summed directly
    got = _column_window_sums_(x.clone(), k)
    assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-12, atol=1e-12)


def _input_dtypes(model: torch.nn.Module, x: torch.Tensor) -> dict[str, set[torch.dtype]]:
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
        model(x)
    return seen


def test_bf16_runs_matrix_products_in_bf16_and_keeps_norms_grn_statistics_and_warp_in_float32(monkeypatch):
    from harness.models.flowcnrdb import Compute

    model = _randomise(create_model("flowcnrdb_tiny"), std=0.05).eval()
    x = torch.rand(1, 9, 64, 320)
    convs: list[tuple[torch.nn.Conv2d, torch.dtype]] = []
    conv = Compute.conv
    monkeypatch.setattr(Compute, "conv", lambda self, c, t: convs.append((c, self.dtype)) or conv(self, c, t))
    with torch.inference_mode():
        want = model(x)
        got = model.set_precision(torch.bfloat16)(x)
    skips = [level.skip_conv for level in model.reg_model.unet.up]  # the U-Net's dense 3x3 convolutions
    assert skips and all((c, torch.bfloat16) in convs and (c, torch.float32) in convs for c in skips)
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    assert 0 < (got - want).abs().max() < 0.02 * want.abs().max()
    seen = _input_dtypes(model, x)
    assert torch.bfloat16 in seen["addmm"] and torch.bfloat16 in seen["conv2d"]
    for op in ("layer_norm", "grid_sampler", "addcmul", "addcmul_", "sqrt_", "mean", "div_"):  # norms, GRN statistics, warp
        assert seen[op] == {torch.float32}, op
    model.set_precision(None)
    with torch.inference_mode():
        assert torch.equal(model(x), want)
    assert torch.bfloat16 not in set().union(*_input_dtypes(model, x).values())


def test_bf16_matrix_products_in_row_chunks_compute_the_same(monkeypatch):
    from harness.models.flowcnrdb import Compute

    model = _randomise(create_model("flowcnrdb_tiny"), std=0.05).eval().set_precision(torch.bfloat16)
    x = torch.rand(1, 9, 64, 320)
    with torch.inference_mode():
        whole = model(x)
        monkeypatch.setattr(Compute, "REDUCED_ROWS", 1000)  # 5120 pixels per latent map: six chunks, the last one short
        chunked = model(x)
    assert torch.allclose(chunked, whole, rtol=0, atol=1e-3 * whole.abs().max().item())


def test_products_and_projections_in_pieces_give_the_bits_of_one_piece(monkeypatch):
    """Products go Compute.ROWS pixels at a time and each block's projection PROJECT_PIXELS at a time (for the cache); no bit moves."""
    from harness.models import flowcnrdb
    from harness.models.flowcnrdb import Compute

    model = _randomise(create_model("flowcnrdb"), std=0.05).eval()
    x = torch.rand(1, 9, 64, 320)
    with torch.inference_mode():
        monkeypatch.setattr(Compute, "ROWS", 1 << 30)
        monkeypatch.setattr(flowcnrdb, "PROJECT_PIXELS", 1 << 30)
        whole = model(x, return_intermediates=True)
        monkeypatch.setattr(Compute, "ROWS", 700)  # 5120 pixels per latent map: eight pieces, the last one short
        monkeypatch.setattr(flowcnrdb, "PROJECT_PIXELS", 480)  # three rows of 160 at a time
        pieces = model(x, return_intermediates=True)
    for key in whole:
        assert torch.equal(pieces[key], whole[key]), key


def test_a_cnrdb_layer_folds_projection_residual_and_output_conv_into_two_products():
    """silu(out(block(y))) without forming block(y): float32 rounding away from the layer itself, folded weights alike on any thread count."""
    from harness.models.flowcnrdb import Compute, DenseLayer, convnext_fast, fold_projection

    layer = _randomise(DenseLayer(96, 64, 32, 7, 2.0, 16, 0.0), std=0.1).eval()
    _, block, out, _ = layer
    y = torch.randn(1, 64, 40, 48).contiguous(memory_format=torch.channels_last)
    into = torch.full((1, 40, 48, 32), float("nan"))
    with torch.inference_mode():
        unfolded = torch.nn.functional.silu(out(block(y)))
        folded = convnext_fast(block, y, Compute(torch.float32, torch.float32), then=(out, into))
        before = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            one = fold_projection(block.block[6], out, torch.float32)
            torch.set_num_threads(2)
            two = fold_projection(block.block[6], out, torch.float32)
        finally:
            torch.set_num_threads(before)
    assert folded.data_ptr() == into.data_ptr() and folded.shape == (1, 32, 40, 48)
    assert (folded - unfolded).abs().max() <= 1e-5 * unfolded.abs().max()
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    w2, wc = block.block[6].weight.flatten(1).double(), out.weight.flatten(1).double()
    assert torch.equal(one[0], (wc @ w2).float()) and one[0].shape == (32, 128)


@pytest.mark.parametrize("name", ["flowcnrdb_tiny", "flowcnrdb_homography"])
def test_stage_2_convolves_the_reference_once_per_burst_and_each_frame_alone(name):
    """concat(z_ref, z) -> conv_in is split: the reference's share once, then each frame's own channels."""
    model = _randomise(create_model(name), std=0.05).eval()
    conv = model.reg_model.unet.conv_in
    seen: list[tuple[int, int]] = []
    inner = conv._conv_forward

    def record(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        seen.append((x.shape[0], x.shape[1]))
        return inner(x, weight, bias)

    conv._conv_forward = record
    x = torch.rand(2, 9, 64, 64)
    with torch.inference_mode():
        fast = model(x)
        c = model.config.stem_width
        assert seen == [(2, c)] + [(2, c)] * 9  # the reference of each burst, then frame by frame
        seen.clear()
        slow = model.set_fast(False)(x)
        assert seen == [(18, 2 * c)]  # the faithful path: the concatenation, all frames at once
    assert (fast - slow).abs().max() < 1e-4


def test_stage_2_of_a_one_image_burst_stays_channels_last(monkeypatch):
    """A batch of one may carry any batch stride; the fast path gives stage 2 the dense one, so oneDNN keeps channels last.

    With the batch stride that splitting and merging the (B, frames) view
    leaves (C), oneDNN took each frame's latent for planar: its first
    convolution and the U-Net's first blocks ran planar, with copies to and fro.
    """
    from harness.models import flowcnrdb

    model = _randomise(create_model("flowcnrdb_tiny"), std=0.05).eval()
    conv = model.reg_model.unet.conv_in
    outputs: list[torch.Tensor] = []
    inner = conv._conv_forward

    def record(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        outputs.append(inner(x, weight, bias))
        return outputs[-1]

    conv._conv_forward = record
    planar: list[str] = []
    block = flowcnrdb.convnext_fast

    def spy(b: torch.nn.Module, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        if not x.is_contiguous(memory_format=torch.channels_last) or x.stride(0) != x[0].numel():
            planar.append(f"{tuple(x.shape)} {x.stride()}")
        return block(b, x, *args, **kwargs)

    monkeypatch.setattr(flowcnrdb, "convnext_fast", spy)
    x = torch.rand(1, 9, 64, 128)
    with torch.inference_mode():
        fast = model(x)
    assert len(outputs) == 10  # the reference's share, then each frame
    assert all(y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous() for y in outputs)
    assert len(planar) == 9, planar  # only each frame's first stem block, after the patch convolution (one input channel)
    with torch.inference_mode():
        assert (fast - model.set_fast(False)(x)).abs().max() < 1e-4


def test_one_image_strides_is_the_same_memory_with_the_dense_batch_stride():
    from harness.models.flowcnrdb import one_image_strides

    dense = torch.rand(1, 6, 8, 4).contiguous(memory_format=torch.channels_last)
    split_and_merged = dense.unflatten(0, (1, 1)).flatten(0, 1)  # a burst's (B, frames) view, as stage 2 gets it
    assert split_and_merged.stride() == (6, 1, 24, 6)
    fixed = one_image_strides(split_and_merged)
    assert fixed.stride() == dense.stride() and fixed.data_ptr() == dense.data_ptr() and torch.equal(fixed, dense)
    assert one_image_strides(dense) is dense
    planar = torch.rand(1, 6, 8, 4)
    assert one_image_strides(planar) is planar
    two = torch.rand(2, 6, 8, 4).contiguous(memory_format=torch.channels_last)
    assert one_image_strides(two) is two


@pytest.mark.parametrize("precision", [None, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("available", [True, False], ids=["fused", "without-onednn"])
def test_expansions_go_through_onednns_fused_silu_where_it_pays(monkeypatch, available, precision):
    """Where oneDNN's fused product-and-SiLU works: in float32 every ConvNeXt expansion of stages 1 and 2
    (a whole frame at once), stage 3's none; in bfloat16 every expansion of every stage, piece by piece."""
    from harness.inference import cpu_has_bf16
    from harness.models import flowcnrdb
    from harness.models.flowcnrdb import ConvNeXtBlock

    dtype = precision or torch.float32
    if precision is not None and not cpu_has_bf16():
        pytest.skip("this CPU has no native bfloat16 (the harness refuses --precision bf16 there)")
    if available and not flowcnrdb.fused_expansion_works(dtype):
        assert platform.machine() not in ("x86_64", "AMD64"), "x86 builds of torch have oneDNN's fused product-and-SiLU"
        pytest.skip("this torch build has no oneDNN fused product-and-SiLU")
    monkeypatch.setattr(flowcnrdb, "fused_expansion_works", lambda dtype=torch.float32: available)
    calls: list[tuple[torch.Size, torch.dtype]] = []
    fused_product = flowcnrdb._fused_silu_product

    def count(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        calls.append((x.shape, x.dtype))
        return fused_product(x, w, b)

    monkeypatch.setattr(flowcnrdb, "_fused_silu_product", count)
    model = _randomise(create_model("flowcnrdb_tiny"), std=0.05).eval().set_precision(precision)
    x = torch.rand(1, 9, 64, 128)  # 32 x 64 latent maps: one piece of Compute.ROWS pixels per expansion
    with torch.inference_mode():
        fast = model(x)
        slow = model.set_fast(False).set_precision(None)(x)
    per_frame = sum(isinstance(m, ConvNeXtBlock) for part in (model.stem, model.reg_model) for m in part.modules())
    merge = sum(isinstance(m, ConvNeXtBlock) for m in model.merge_model.modules())
    assert per_frame > 0 and merge > 0
    if not available:
        assert calls == []
    elif precision is None:
        assert len(calls) == 9 * per_frame  # every frame's blocks; stage 3's none
        assert all(shape[0] == 1 and len(shape) == 4 and d == torch.float32 for shape, d in calls)  # a frame at a time
    else:
        assert len(calls) == 9 * per_frame + merge and all(len(shape) == 2 and d == torch.bfloat16 for shape, d in calls)
    assert (fast - slow).abs().max() < (1e-4 if precision is None else 0.02 * slow.abs().max())


def test_the_fused_expansion_probe_says_no_where_onednn_fails(monkeypatch):
    from harness.models import flowcnrdb

    def broken(*args: object) -> torch.Tensor:
        raise RuntimeError("mkldnn_linear_pointwise: not compiled with oneDNN")

    monkeypatch.setattr(flowcnrdb, "_fused_silu_product", broken)
    assert flowcnrdb._probe_fused_expansion() is False
    monkeypatch.setattr(flowcnrdb, "_fused_silu_product", torch.nn.functional.linear)  # no SiLU
    assert flowcnrdb._probe_fused_expansion() is False
    widened = lambda x, w, b: torch.nn.functional.silu(torch.nn.functional.linear(x.float(), w.float(), b.float()))  # noqa: E731
    monkeypatch.setattr(flowcnrdb, "_fused_silu_product", widened)  # right values, wrong dtype: not the product it probed
    assert flowcnrdb._probe_fused_expansion(torch.bfloat16) is False
    monkeypatch.undo()
    assert flowcnrdb._probe_fused_expansion() is True


def test_threads_follow_the_idle_cpus(monkeypatch):
    from harness.models import flowcnrdb

    assert flowcnrdb.idle_share({"cpu0": [10, 0, 10, 80, 0, 0, 0, 0]}, {"cpu0": [30, 0, 10, 140, 20, 0, 0, 0]}) == 0.8
    assert flowcnrdb.idle_share({"cpu0": [1] * 8}, {"cpu0": [1] * 8}) == 1.0
    monkeypatch.setattr(flowcnrdb, "idle_cpus", lambda window: 0.7)
    assert flowcnrdb.threads_for_load(4) == 1 and flowcnrdb.threads_for_load(1) == 1
    monkeypatch.setattr(flowcnrdb, "idle_cpus", lambda window: 2.6)
    assert flowcnrdb.threads_for_load(2) == 2 and flowcnrdb.threads_for_load(8) == 3
    monkeypatch.setattr(flowcnrdb, "idle_cpus", lambda window: None)
    assert flowcnrdb.threads_for_load(2) == 2
    real = flowcnrdb.idle_cpus(0.05)
    assert real is None or 0 <= real <= len(__import__("os").sched_getaffinity(0))


def test_a_busy_machine_runs_the_forward_on_fewer_threads_and_restores_the_count(monkeypatch):
    from harness.models import flowcnrdb

    model = create_model("flowcnrdb_tiny").eval()
    inside: list[int] = []
    model.merge_model.conv_out.register_forward_pre_hook(lambda m, a: inside.append(torch.get_num_threads()))
    monkeypatch.setattr(flowcnrdb, "idle_cpus", lambda window: 0.0)
    monkeypatch.setattr(flowcnrdb, "SAMPLE_LOAD_PIXELS", 1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.inference_mode():
            model(torch.rand(1, 9, 32, 32))
        assert inside == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_large_frames_go_through_stages_1_and_2_side_by_side_on_single_threads(monkeypatch):
    import threading

    from harness.models import flowcnrdb

    model = _randomise(create_model("flowcnrdb"), std=0.05).eval()
    stems: list[tuple[str, int]] = []
    merges: list[int] = []
    model.stem.patch.register_forward_pre_hook(lambda m, a: stems.append((threading.current_thread().name, torch.get_num_threads())))
    model.merge_model.conv_out.register_forward_pre_hook(lambda m, a: merges.append(torch.get_num_threads()))
    aligns: list[tuple[str, int]] = []
    model.reg_model.unet.conv_out.register_forward_pre_hook(
        lambda m, a: aligns.append((threading.current_thread().name, torch.get_num_threads()))
    )
    monkeypatch.setattr(flowcnrdb, "SAMPLE_LOAD_PIXELS", 1)
    monkeypatch.setattr(flowcnrdb, "idle_cpus", lambda window: 2.0)
    model.frame_threads = 2
    x = torch.rand(1, 9, 64, 320)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():  # grad mode, not inference mode: each worker takes the caller's
            fast = model(x, return_intermediates=True)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    side = [name for name, _ in stems if name.startswith("burst-frames")]
    # Frame 0's stem first on the calling thread; frames 1-8 on the workers, one thread each (the ninth frame's
    # stage 1 by the first worker free after the last round); stage 2 of frames 0-7 there, of the ninth here.
    assert len(stems) == 9 and len(side) == 8 and stems[0][0] == threading.main_thread().name
    assert {n for name, n in stems if name.startswith("burst-frames")} == {1} and merges == [2]
    assert [name.startswith("burst-frames") for name, _ in aligns] == [True] * 8 + [False] and aligns[-1][1] == 2
    with torch.no_grad():
        slow = model.set_fast(False)(x, return_intermediates=True)
    for key in slow:
        scale = slow[key].abs().max().clamp_min(1.0)
        assert (fast[key] - slow[key]).abs().max() / scale < 1e-4, key


def test_side_by_side_steps_keep_their_order_and_the_callers_modes_and_restore_the_thread_count():
    import threading

    from harness.models.flowcnrdb import run_side_by_side

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
        assert [s[0] for s in seen] == [0, 2, 4, 6, 8] and [s[1][0] for s in seen] == [0, 2, 4, 6, 8] and all(s[3] for s in seen)
        assert [s[4] for s in seen] == [1, 1, 1, 1, 2]  # the fifth step does not fill a round: its second part on the caller's threads
        assert all(s[1][1].startswith("burst-frames") and s[1][2] == 1 for s in seen)  # every first part on a worker
        assert [s[2] == main for s in seen] == [False] * 4 + [True]
        assert run_side_by_side(first, then, [0], 2) == [(0, (0, main, 2), main, False, 2)]

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
@pytest.mark.parametrize(
    ("name", "size", "frame_threads"),
    [("flowcnrdb", (128, 256), 2), ("flowcnrdb_tiny", (256, 512), 2), ("flowcnrdb", (128, 256), 1)],
    ids=["flowcnrdb-side-by-side", "tiny-side-by-side", "flowcnrdb-frames-on-the-load-threads"],
)
def test_the_machines_load_never_changes_a_bit_of_the_result(monkeypatch, name, size, frame_threads, dtype):
    """The thread count follows the load; the output must not (a server's scores to the last digit).

    With ``frame_threads = 1`` stages 1 and 2 run on the calling thread with
    the load's thread count too (oneDNN's fused expansion on one and on two threads).
    """
    from harness.models import flowcnrdb

    import threading

    model = _randomise(create_model(name), std=0.05).eval().set_precision(dtype)
    model.frame_threads = frame_threads
    monkeypatch.setattr(flowcnrdb, "SAMPLE_LOAD_PIXELS", 1)
    dw = model.merge_model.blocks[0].blocks[0][1].block[0]
    threads: list[str] = []
    dw.register_forward_pre_hook(lambda m, a: threads.append(threading.current_thread().name))
    torch.manual_seed(1)
    x = torch.rand(1, 9, *size) * 2
    before = torch.get_num_threads()
    runs, banded = [], []
    try:
        for idle in (2.0, 0.5):  # quiet: two threads; busy: one, and in float32 stage 3 over row bands side by side
            monkeypatch.setattr(flowcnrdb, "idle_cpus", lambda window, idle=idle: idle)
            torch.set_num_threads(2)
            threads.clear()
            with torch.inference_mode():
                runs.append(model(x, return_intermediates=True))
            banded.append(sum(name.startswith("row-bands") for name in threads))
    finally:
        torch.set_num_threads(before)
    assert banded == [0, 8 if dtype is None and frame_threads > 1 else 0]
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key
