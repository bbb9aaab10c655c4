"""One policy for a model's weights (harness.loading), for every command."""

from __future__ import annotations

import pytest
import torch
from clihelp import invoke, one_error

from harness.errors import HarnessError
from harness.loading import RANDOM, RANDOM_STD, load_model


def test_random_weights_are_realistic_the_same_every_time_and_leave_the_callers_random_state():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b = load_model("flowcnrdb_tiny", random_init=True), load_model("flowcnrdb_tiny", random_init=True)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert a.weights == RANDOM and a.weights_sha256 is None
    flat = torch.cat([p.detach().flatten() for p in a.model.parameters()])
    assert abs(float(flat.std()) - RANDOM_STD) < 0.002 and abs(float(flat.mean())) < 0.002
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert all(p.abs().sum() > 0 for p in a.model.parameters())  # the zero-initialised layers too


def test_bundled_weights_explicit_weights_and_random_init_in_that_order(tmp_path):
    bundled = load_model("flowcnrdb_tiny")
    assert bundled.weights == "bundled:flowcnrdb_tiny.safetensors" and bundled.weights_sha256
    path = tmp_path / "w.pth"
    torch.save(load_model("flowcnrdb_tiny", random_init=True).model.state_dict(), path)
    explicit = load_model("flowcnrdb_tiny", weights=path, random_init=True)  # a file given wins
    assert explicit.weights == str(path)
    assert all(
        torch.equal(p, q)
        for p, q in zip(explicit.model.parameters(), load_model("flowcnrdb_tiny", random_init=True).model.parameters())
    )
    assert not all(torch.equal(p, q) for p, q in zip(bundled.model.parameters(), explicit.model.parameters()))


def test_a_model_without_weights_is_refused_unless_random_weights_are_allowed():
    with pytest.raises(HarnessError, match="has no weights: pass --weights PATH .*or --random-init"):
        load_model("flowcnrdb")
    assert load_model("flowcnrdb", or_random=True).weights == RANDOM
    assert load_model("demosaic").weights is None  # nothing to load


def test_the_advice_to_pass_random_init_works(tmp_path, small_data):
    args = ("evaluate", "--model", "unet_baseline", "--data", small_data, "--no-report")
    refused = invoke(*args, "--out", tmp_path / "a")
    assert refused.exit_code == 2 and "--random-init" in one_error(refused.output)
    taken = invoke(*args, "--out", tmp_path / "b", "--random-init")
    assert taken.exit_code == 0, taken.output
