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


@pytest.fixture(scope="session")
def browser():
    """A real headless Chromium (Debian's), shared by the tests that open HTML."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--window-size=1280,2000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"))
    yield driver
    driver.quit()
