"""Shared fixtures: a small synthetic dataset, the spec fixtures (tests/fixtures), a private cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Keep the tests' cache (embedded dataset, npy crops) out of the user's cache.
os.environ.setdefault("HARNESS_CACHE", tempfile.mkdtemp(prefix="harness-test-cache-"))

FIXTURES = Path(__file__).resolve().parent / "fixtures"  # copied from shared/fixtures (see its README)


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 training and 3 validation scenes of 64 x 128, made by the real generator."""
    from harness.data.synth import synthesize
    from harness.options import SynthConfig

    out = tmp_path_factory.mktemp("data") / "small"
    synthesize(out, SynthConfig(train_scenes=4, val_scenes=3, height=64, width=128, seed=3))
    return out
