"""The embedded default dataset: synthesised once, deterministically, into a cache folder."""

from __future__ import annotations

import os
from pathlib import Path

from harness.data.synth import GENERATOR_VERSION, synthesize
from harness.options import SynthConfig
from harness.progress import Progress, notify

EMBEDDED = SynthConfig()


def cache_root() -> Path:
    """``$HARNESS_CACHE``, else ``$XDG_CACHE_HOME/harness``, else ``~/.cache/harness``."""
    if os.environ.get("HARNESS_CACHE"):
        return Path(os.environ["HARNESS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harness"


def embedded_dataset(progress: Progress | None = None) -> Path:
    """The folder of the embedded dataset, generating it on first use."""
    folder = cache_root() / f"{GENERATOR_VERSION}-default"
    if not (folder / "dataset.json").is_file():

        def synthesising(done: int, total: int, note: str = "") -> None:
            notify(progress, done, total, f"synthesising the embedded dataset: {note}")

        synthesize(folder, EMBEDDED, force=True, progress=synthesising)
    return folder
