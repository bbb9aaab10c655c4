"""The model registry, keyed on variant name (timm style).

Each variant is a small function decorated with :func:`register_model` that
builds the model with its own arguments and lets the caller's keyword
arguments override them. ``create_model`` drops overrides that are ``None`` so
that a command-line default never replaces a model's own default.

What the generic code needs to know about a model lives in its
:class:`ModelEntry`: its class and configuration class (for code
submissions), its source file, its bundled weights, where its published
weights are found, and which arguments it reads from a data folder.
"""

from __future__ import annotations

import fnmatch
import inspect
from dataclasses import asdict, dataclass
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
    model_class: type[nn.Module] | None = None
    config_class: type | None = None
    weights_hint: str = ""
    data_args: Callable[[Path], dict[str, Any]] | None = None

    @property
    def source_file(self) -> Path | None:
        """The self-contained file defining the model class (what a code submission ships)."""
        return Path(inspect.getfile(self.model_class)) if self.model_class is not None else None

    def args_from_data(self, data: Path | None) -> dict[str, Any]:
        """Constructor arguments this model reads from a data folder (None values dropped)."""
        if self.data_args is None or data is None:
            return {}
        return {k: v for k, v in self.data_args(data).items() if v is not None}


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    family: str,
    description: str,
    key_config: str = "",
    weights: WeightsInfo | None = None,
    *,
    model_class: type[nn.Module] | None = None,
    config_class: type | None = None,
    weights_hint: str = "",
    data_args: Callable[[Path], dict[str, Any]] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register the decorated builder under its function name; duplicates are refused."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(
            name, family, fn, description, key_config, weights, model_class, config_class, weights_hint, data_args
        )
        return fn

    return wrap


def _registered() -> dict[str, ModelEntry]:
    """Every registered model; the built-in variants (:mod:`harness.variants`) register themselves on first use."""
    import harness.variants  # noqa: F401

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
