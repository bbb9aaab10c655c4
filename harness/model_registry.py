"""The model registry's mechanism: entries and ``register_model`` (the lookups live in :mod:`harness.registry`).

Each variant is a small function decorated with :func:`register_model` that
builds the model with its own arguments and lets the caller's keyword
arguments override them; a name taken already is refused.

What the generic code needs to know about a model lives in its
:class:`ModelEntry`: its class and configuration class (for code
submissions), its source file, its bundled weights, where its published
weights are found, and which arguments it reads from a data folder.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

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
