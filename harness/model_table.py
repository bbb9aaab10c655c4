"""Rows of ``harness models``: name, parameters, key config, description, weights."""

from __future__ import annotations

from typing import Any

import torch

from harness.registry import create_model, list_models, model_entry


def count_parameters(name: str) -> int:
    """Parameters of a registered model, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = create_model(name)
    return sum(p.numel() for p in model.parameters())


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
    return rows
