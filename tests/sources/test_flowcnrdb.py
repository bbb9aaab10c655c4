"""FlowCNRDB against the spec's fixtures, and every registered variant."""

from __future__ import annotations

import json

import pytest
import torch

from harness import create_model, list_models
from harness.model_table import count_parameters
from harness.models.flowcnrdb import GRN, FlowCNRDB, FlowCNRDBConfig, box_sum, flow_warp, homography_flow
from harness.models.unet_baseline import UNetBaseline
from harness.variants import TINY_ARGS

INTERMEDIATES = ("output", "stem_features", "flow", "mask", "warped_features")


@pytest.fixture(scope="module")
def reference(shared_fixtures):
    return torch.load(shared_fixtures / "flowcnrdb_reference_tiny.pt", weights_only=True)


@pytest.fixture(scope="module")
def reference_model(reference):
    model = FlowCNRDB(FlowCNRDBConfig(**reference["config"])).eval()
    model.load_state_dict(reference["state_dict"], strict=True)
    return model


@pytest.mark.parametrize("case", [0, 1], ids=["windowed-grn-64x128", "global-grn-32x32"])
def test_reference_outputs(reference, reference_model, case):
    data = reference["cases"][case]
    with torch.no_grad():
        got = reference_model(data["input"], return_intermediates=True)
    for name in INTERMEDIATES:
        assert got[name].shape == data[name].shape, name
        diff = (got[name] - data[name]).abs().max().item()
        assert diff < 1e-4, f"{name}: max abs diff {diff}"


def test_plain_forward_equals_output_intermediate(reference, reference_model):
    x = reference["cases"][0]["input"]
    with torch.no_grad():
        assert torch.equal(reference_model(x), reference_model(x, return_intermediates=True)["output"])


def test_published_layout_loads_strictly(shared_fixtures):
    layout = json.loads((shared_fixtures / "flowcnrdb_checkpoint_layout.json").read_text())
    state = {name: torch.full(shape, 0.01) for name, shape in layout["tensors"]}
    with torch.device("meta"):
        model = FlowCNRDB()
    model = model.to_empty(device="cpu")
    model.load_state_dict(state, strict=True)
    assert len(model.state_dict()) == layout["num_tensors"] == 1147
    assert sum(p.numel() for p in model.parameters()) == layout["num_parameters"]


def test_parameter_counts():
    assert count_parameters("flowcnrdb") == 18_651_029
    assert count_parameters("unet_baseline") == 7_700_931
    assert count_parameters("flowcnrdb_tiny") < 1_000_000
    assert count_parameters("demosaic") == 0


def test_unet_baseline_state_dict_names():
    names = set(UNetBaseline().state_dict())
    for expected in (
        "down_path.0.block.0.weight",
        "down_path.3.block.2.bias",
        "up_path.0.up.weight",
        "up_path.2.conv_block.block.2.weight",
        "last.weight",
    ):
        assert expected in names


def test_small_variant_is_about_half_the_compute():
    from torch.utils.flop_counter import FlopCounterMode

    def macs(name):
        with torch.device("meta"):
            model = create_model(name).eval()  # count the computation as published
            x = torch.ones(1, 9, 256, 512)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(x)
        return counter.get_total_flops()

    ratio = macs("flowcnrdb_small") / macs("flowcnrdb")
    assert 0.4 < ratio < 0.6, ratio


@pytest.mark.parametrize("name", list_models())
def test_every_variant_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    x = torch.rand(1, 9, 64, 64, requires_grad=True)
    out = model(x)
    assert out.shape == (1, 3, 64, 64)
    out.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    grads = [p.grad for p in model.parameters()]
    if grads:
        assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_homography_starts_at_identity():
    torch.manual_seed(0)
    model = create_model("flowcnrdb_homography", **TINY_ARGS).eval()
    with torch.no_grad():
        got = model(torch.rand(1, 9, 64, 64), return_intermediates=True)
    assert got["flow"].abs().max() < 1e-5
    assert torch.allclose(got["warped_features"].flatten(0, 1), got["stem_features"], atol=1e-5)


def test_noalign_passes_features_unwarped():
    model = create_model("flowcnrdb_noalign", train_size=32, stem_width=8, merge_depth=1).eval()
    with torch.no_grad():
        got = model(torch.rand(1, 9, 32, 64), return_intermediates=True)
    assert torch.equal(got["warped_features"].flatten(0, 1), got["stem_features"])
    assert torch.equal(got["mask"], torch.ones_like(got["mask"]))


def test_the_warp_and_the_homography_flow_stay_float32_under_bfloat16_autocast():
    # 600 columns: bfloat16 holds no integer above 256 exactly, so a bfloat16 pixel grid samples pixels away.
    x = torch.rand(1, 3, 5, 600).bfloat16()
    flow = torch.zeros(1, 2, 5, 600, dtype=torch.bfloat16)
    flow[:, 0, :, 400:] = 0.5  # half a pixel, exact in bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        warped, mask = flow_warp(x, flow)
        hom_flow = homography_flow(torch.eye(3)[None], x)
    wide, tol = x.float(), 1e-3  # float32 coordinates round-trip to ~1e-4 px; a bfloat16 grid misses by whole pixels
    assert warped.dtype == mask.dtype == hom_flow.dtype == torch.float32
    assert torch.allclose(warped[..., :400], wide[..., :400], atol=tol)  # zero flow: the identity
    assert torch.allclose(warped[..., 401:], (wide[..., 400:-1] + wide[..., 401:]) / 2, atol=tol)  # p - 0.5
    assert torch.equal(mask[..., 1:], torch.ones_like(mask[..., 1:]))
    assert hom_flow.abs().max() < 1e-3  # the identity homography moves nothing
    reg = create_model("flowcnrdb_homography", **TINY_ARGS).reg_model
    torch.nn.init.constant_(reg.head.bias, 1e-3)  # in bfloat16, 1 + 1e-3 is 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hom = reg.homography_from([torch.rand(2, TINY_ARGS["reg_widths"][-1], 4, 4)])
    assert hom.dtype == torch.float32 and torch.allclose(hom[:, 0, 0], torch.tensor(1.001), atol=1e-5)


def test_box_sum_matches_direct_sums():
    x = torch.rand(2, 3, 11, 17, dtype=torch.float64)
    got = box_sum(x, 4, 6)
    want = torch.nn.functional.avg_pool2d(x, (4, 6), stride=1) * 24
    assert torch.allclose(got, want)


@pytest.mark.parametrize("shape", [(8, 8), (9, 13), (8, 30), (30, 8)])
def test_grn_window_rule_and_padding(shape):
    grn = GRN(4, window=8)
    x = torch.rand(1, 4, *shape, dtype=torch.float64)
    g = grn.norms(x)
    assert g.shape[-2:] == (1, 1) if shape == (8, 8) else g.shape[-2:] == shape
    h, w = shape
    if (h, w) != (8, 8):
        k1, k2 = min(h, 8), min(w, 8)
        # The centre pixel's window starts (k - 1) // 2 ... before it: check one interior value directly.
        oy, ox = (h - (h - k1 + 1)) // 2, (w - (w - k2 + 1)) // 2
        want = x[:, :, 0:k1, 0:k2].square().sum(dim=(2, 3)).sqrt()
        assert torch.allclose(g[:, :, oy, ox], want)
        assert torch.allclose(g[:, :, 0, 0], want)  # replicated edge
