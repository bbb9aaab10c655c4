"""One way to get a model with its weights, for every command that runs one (``evaluate``, ``bench``, ``export``).

The policy, in order:

1. ``weights`` given: that checkpoint, loaded strictly and safely;
2. ``random_init``: random weights (:func:`randomise`: every parameter drawn from N(0, 0.02), seed 0);
3. a code submission's own checkpoint (its ``model_zoo/``), or a registered model's bundled weights;
4. a file, module or plugin model: the weights its factory gave it;
5. otherwise, with ``or_random``, random weights as in 2; without it, refused in one line saying how to
   give weights.

Every model is built from seed 0 with the caller's random state untouched, so weights a factory draws
and random weights are the same in every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from harness.checkpoint import load_checkpoint
from harness.errors import HarnessError
from harness.io import sha256_file
from harness.model_import import Args, ModelSource
from harness.registry import model_entry
from harness.sources import resolve_model
from harness.submission import zoo_choice

RANDOM = "random-init"
RANDOM_STD = 0.02


@dataclass
class Loaded:
    """A model ready to run, and what its weights were (``weights``: a path, ``bundled:FILE``, ``random-init``,
    ``as built by the factory`` or None for a model without parameters)."""

    model: nn.Module
    source: ModelSource
    weights: str | None
    weights_sha256: str | None


def randomise(model: nn.Module) -> nn.Module:
    """Every parameter drawn from N(0, 0.02) from seed 0 (the caller's random state untouched): weights of a
    realistic scale that exercise every layer, zero-initialised ones included."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        for p in model.parameters():
            nn.init.normal_(p, std=RANDOM_STD)
    return model


def load_model(
    spec: str,
    args: Args | None = None,
    trust_code: bool = False,
    weights: str | Path | None = None,
    random_init: bool = False,
    or_random: bool = False,
) -> Loaded:
    """The model ``spec`` names, with its weights by the module's policy."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model, source = resolve_model(spec, args, trust_code)
    given = weights if weights is not None else (None if random_init else source.weights)  # a file given wins
    if given is not None:
        load_checkpoint(model, given)
        return Loaded(model, source, str(given), sha256_file(given))
    if not any(True for _ in model.parameters()):
        return Loaded(model, source, None, None)
    if random_init:
        return Loaded(randomise(model), source, RANDOM, None)
    if source.kind in ("file", "module", "plugin"):
        return Loaded(model, source, "as built by the factory", None)
    if source.choices:
        raise HarnessError(zoo_choice([Path(c) for c in source.choices]))
    hint = " (the submission's model_zoo/ holds no checkpoint)"
    if source.kind == "registered":
        entry = model_entry(spec)
        if entry.weights is not None and entry.weights.path.is_file():
            load_checkpoint(model, entry.weights.path)
            return Loaded(model, source, f"bundled:{entry.weights.file}", sha256_file(entry.weights.path))
        hint = f" ({entry.weights_hint})" if entry.weights_hint else ""
    if or_random:
        return Loaded(randomise(model), source, RANDOM, None)
    raise HarnessError(f"model {spec!r} has no weights: pass --weights PATH{hint}, or --random-init for a smoke test")
