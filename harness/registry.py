"""The model registry's lookups, keyed on variant name (timm style), with the built-in variants registered.

Importing this module imports :mod:`harness.variants`, which registers the
built-in models through :mod:`harness.model_registry`; plugins and users
register theirs the same way. ``create_model`` drops overrides that are
``None`` so that a command-line default never replaces a model's own default.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict
from typing import Any

from torch import nn

import harness.variants  # noqa: F401  # the built-in variants register themselves
from harness.errors import HarnessError
from harness.model_registry import _REGISTRY, WEIGHTS_DIR, ModelEntry, WeightsInfo, register_model

__all__ = [
    "WEIGHTS_DIR",
    "ModelEntry",
    "WeightsInfo",
    "create_model",
    "list_models",
    "model_config",
    "model_entry",
    "model_multiple",
    "register_model",
]


def _registered() -> dict[str, ModelEntry]:
    return _REGISTRY


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, sorted."""
    return sorted(n for n in _registered() if fnmatch.fnmatch(n, pattern))


def model_entry(name: str) -> ModelEntry:
    try:
        return _registered()[name]
    except KeyError:
        raise HarnessError(f"unknown model {name!r}; known: {', '.join(list_models())}") from None


def model_config(model: nn.Module) -> dict[str, Any]:
    """A model's configuration dataclass as plain JSON-ready values (tuples as lists); {} without one."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        return {}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}


def model_multiple(model: nn.Module) -> int:
    """H and W of the input must be multiples of this (``config.multiple``; 1 without one)."""
    return int(getattr(getattr(model, "config", None), "multiple", 1))


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model; keyword arguments override its configuration."""
    entry = model_entry(name)
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    try:
        return entry.builder(**kwargs)
    except TypeError as exc:
        raise HarnessError(f"model {name!r}: {exc}") from None
