"""The fast inference path against the faithful computation (issue: speed)."""

from __future__ import annotations

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
