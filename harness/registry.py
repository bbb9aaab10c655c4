"""The model registry, keyed on variant name (timm style).

Each variant is a small function decorated with :func:`register_model` that
builds the model with its own arguments and lets the caller's keyword
arguments override them. ``create_model`` drops overrides that are ``None`` so
that a command-line default never replaces a model's own default.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from harness.errors import HarnessError

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class WeightsInfo:
    """What describes a set of bundled weights, apart from the architecture."""

    file: str
    sha256: str
    trained: str
    license: str = "MIT"

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    builder: Callable[..., nn.Module]
    description: str
    key_config: str = ""
    weights: WeightsInfo | None = None
    source_file: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    family: str,
    description: str,
    key_config: str = "",
    weights: WeightsInfo | None = None,
    source_file: str = "",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register the decorated builder under its function name; duplicates are refused."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, family, fn, description, key_config, weights, source_file)
        return fn

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise HarnessError(f"unknown model {name!r}; known: {', '.join(list_models())}") from None


def model_config(model: nn.Module) -> dict[str, Any]:
    """A model's configuration dataclass as plain JSON-ready values (tuples as lists); {} without one."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        return {}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model; keyword arguments override its configuration."""
    entry = model_entry(name)
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    try:
        return entry.builder(**kwargs)
    except TypeError as exc:
        raise HarnessError(f"model {name!r}: {exc}") from None
