"""harness: the workbench for the NTIRE 2025 Efficient Burst HDR and Restoration challenge."""

from __future__ import annotations

from harness import variants as _variants  # noqa: F401  (registers the models)
from harness.checkpoint import load_checkpoint
from harness.registry import list_models, model_entry, register_model
from harness.sources import create_model, resolve_model

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "load_checkpoint", "model_entry", "register_model", "resolve_model", "__version__"]
