"""Strict, safe checkpoint loading.

Only ``torch.load(..., weights_only=True)`` and safetensors are used: no
arbitrary pickles. Every load is strict, and the keys and shapes are checked
before anything is copied, so a mismatch never leaves a model half loaded.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from harness.challenge import MAX_CHECKPOINT_BYTES
from harness.errors import HarnessError, first_line

WRAPPER_KEYS = ("state_dict", "model", "params")
KEY_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(HarnessError):
    """A checkpoint could not be read or does not fit the model."""


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a checkpoint file into a plain state dict (unwrapped, prefixes removed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(path))
        except Exception as exc:  # safetensors raises several error types
            raise CheckpointError(f"{path}: not a readable safetensors file ({first_line(exc)})") from None
    else:
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):  # torch.save's zip, or a legacy pickle
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither torch.save's zip format nor a pickle)")
        _check_unpacked_size(path, zipped=magic.startswith(b"PK"))
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, ...
            raise CheckpointError(f"{path}: {_load_failure(exc)}") from None
    return _unwrap(obj, path)


def _check_unpacked_size(path: Path, zipped: bool) -> None:
    """Refuse a checkpoint whose tensors would take more than MAX_CHECKPOINT_BYTES, from its zip directory (members
    may be stored compressed) or its size, before torch reads a byte of it."""
    try:
        size = sum(i.file_size for i in zipfile.ZipFile(path).infolist()) if zipped else path.stat().st_size
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({first_line(exc)})") from None
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"{path}: holds {size / 2**30:.1f} GiB unpacked; checkpoints here hold at most "
            f"{MAX_CHECKPOINT_BYTES / 2**30:.0f} GiB (a model within the challenge's limits is far smaller)"
        )


def _load_failure(exc: BaseException) -> str:
    """Why torch.load (weights only) failed, without torch's advice to turn the safe loader off."""
    text = str(exc)
    if "Weights only load failed" in text or "weights_only" in text:
        cause = next(
            (
                line.strip()
                for line in text.splitlines()
                if line.strip().startswith(("WeightsUnpickler error", "Unsupported"))
            ),
            "",
        )
        return (
            f"refused by the safe loader: it holds Python objects beyond tensors ({cause[:160] or 'not weights only'})"
        )
    return f"not a PyTorch checkpoint ({first_line(exc, 160)})"


def _strip(name: str) -> str:
    """The parameter name without wrapper prefixes (``module.``, ``_orig_mod.``, in any order and number)."""
    while name.startswith(KEY_PREFIXES):
        name = next(name[len(p) :] for p in KEY_PREFIXES if name.startswith(p))
    return name


def _unwrap(obj: object, path: Path) -> dict[str, Tensor]:
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict (expected a mapping of names to tensors)")
    out: dict[str, Tensor] = {}
    for key, value in obj.items():
        name = _strip(str(key))
        if name in out:
            raise CheckpointError(
                f"{path}: holds {name!r} twice (with and without a wrapper prefix); which one is meant?"
            )
        if value.is_meta:
            raise CheckpointError(f"{path}: {key!r} is a meta tensor: a shape without data, nothing to load")
        if value.layout != torch.strided:
            raise CheckpointError(f"{path}: {key!r} is a {value.layout} tensor; weights must be dense")
        out[name] = value
    return out


def check_state_dict(model: nn.Module, state: Mapping[str, Tensor], source: str = "checkpoint") -> None:
    """Raise a readable CheckpointError unless ``state`` fits ``model`` exactly."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    dtypes = [
        f"{k} is {state[k].dtype}, not floating point"
        for k, v in expected.items()
        if k in state and v.is_floating_point() and not state[k].is_floating_point()
    ]
    if not (missing or unexpected or shapes or dtypes):
        return
    parts = []
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", shapes),
        ("wrong dtype", dtypes),
    ):
        if items:
            shown = ", ".join(items[:3]) + (", ..." if len(items) > 3 else "")
            parts.append(f"{len(items)} {label} ({shown})")
    raise CheckpointError(f"{source}: does not fit {type(model).__name__}: " + "; ".join(parts))


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load ``path`` into ``model`` strictly and safely; returns the model.

    Accepts a raw state dict, ``{'state_dict': ...}``, ``{'model': ...}``,
    ``{'params': ...}``, keys prefixed ``module.`` or ``_orig_mod.``, and
    ``.safetensors`` files. Nothing is copied unless every key and shape fits.
    """
    state = read_state_dict(path)
    check_state_dict(model, state, str(path))
    model.load_state_dict(state, strict=True)
    return model
