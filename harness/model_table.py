"""Rows of ``harness models``: name, parameters, key config, description, weights."""

from __future__ import annotations

import fnmatch
from typing import Any

import torch

from harness.registry import create_model, list_models, model_entry


def count_parameters(name: str) -> int:
    """Parameters of a registered model, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = create_model(name)
    return sum(p.numel() for p in model.parameters())


def plugin_rows(pattern: str = "*") -> list[dict[str, Any]]:
    """Installed plugin models (entry points of the group ``harness.models``), built on the meta device."""
    from harness.sources import plugins, resolve_model

    rows = []
    for name, ep in sorted(plugins().items()):
        if not fnmatch.fnmatch(name, pattern):
            continue
        try:
            with torch.device("meta"):
                params = sum(p.numel() for p in resolve_model(name)[0].parameters())
            params_m: float | str = params / 1000**2
        except Exception as exc:  # a broken plugin must not hide the others
            params, params_m = 0, f"failed: {type(exc).__name__}"
        rows.append(
            {
                "name": name,
                "params": params,
                "params_m": params_m,
                "key_config": "",
                "description": f"plugin: {ep.value}",
                "weights": "its own",
            }
        )
    return rows


def model_rows(pattern: str = "*") -> list[dict[str, Any]]:
    rows = []
    for name in list_models(pattern):
        entry = model_entry(name)
        params = count_parameters(name)
        if entry.weights is None:
            weights = "none needed" if params == 0 else "no"
        else:
            weights = "bundled" if entry.weights.path.is_file() else "missing"
        rows.append(
            {
                "name": name,
                "params": params,
                "params_m": params / 1000**2,
                "key_config": entry.key_config,
                "description": entry.description,
                "weights": weights,
            }
        )
    return rows + plugin_rows(pattern)
