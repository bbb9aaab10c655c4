"""Shared fixtures: a small synthetic dataset, the shared spec fixtures, a private cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Keep the tests' cache (embedded dataset, npy crops) out of the user's cache.
os.environ.setdefault("HARNESS_CACHE", tempfile.mkdtemp(prefix="harness-test-cache-"))

ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    assert SHARED_FIXTURES.is_dir(), f"the spec fixtures are expected at {SHARED_FIXTURES}"
    return SHARED_FIXTURES


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 training and 3 validation scenes of 64 x 128, made by the real generator."""
    from harness.data.synth import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("data") / "small"
    synthesize(out, SynthConfig(train_scenes=4, val_scenes=3, height=64, width=128, seed=3))
    return out
