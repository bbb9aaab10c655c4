"""harness: the workbench for the NTIRE 2025 Efficient Burst HDR and Restoration challenge.

The public functions are imported on first use, so ``import harness`` alone loads no torch: the
command line sets the process up (:mod:`harness.allocator`) before anything heavy is loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.4.0"
_HOMES = {
    "create_model": "harness.sources",
    "resolve_model": "harness.sources",
    "load_checkpoint": "harness.checkpoint",
    "list_models": "harness.registry",
    "model_entry": "harness.registry",
    "register_model": "harness.registry",
}
__all__ = [*sorted(_HOMES), "__version__"]


def __getattr__(name: str) -> Any:
    """One of the public functions, from its module (``from harness import create_model``)."""
    if name not in _HOMES:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
