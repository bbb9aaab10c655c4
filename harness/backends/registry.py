"""The backends by name, and ``auto``'s choice."""

from __future__ import annotations

import torch
from torch import nn

from harness.backends.base import Backend, BackendUnavailable, Settings
from harness.backends.compiled import Compile
from harness.backends.eager import Eager
from harness.backends.exported import OnnxRuntime, OpenVino
from harness.backends.fast import Fast
from harness.errors import HarnessError

AUTO = "auto"
BACKENDS: dict[str, Backend] = {b.name: b for b in (Eager(), Fast(), Compile(), OnnxRuntime(), OpenVino())}


def register_backend(backend: Backend) -> None:
    """Add a backend under its name; a name taken already is refused."""
    if backend.name in BACKENDS or backend.name == AUTO:
        raise HarnessError(f"a backend named {backend.name!r} is registered already")
    BACKENDS[backend.name] = backend


def backend_names() -> list[str]:
    return [AUTO, *BACKENDS]


def choose_backend(name: str, model: nn.Module, settings: Settings) -> Backend:
    """The backend ``name`` (``auto``: ``fast`` where it serves the model, else ``eager``), refused in one line where it cannot serve."""
    if name == AUTO:
        fast = BACKENDS["fast"]
        return fast if fast.unsupported(model, settings) is None else BACKENDS["eager"]
    if name not in BACKENDS:
        raise HarnessError(f"--backend: unknown backend {name!r}; known: {', '.join(backend_names())}")
    backend = BACKENDS[name]
    reason = backend.unsupported(model, settings)
    if reason is not None:
        raise BackendUnavailable(f"--backend {name}: {reason}")
    return backend


def parse_backends(text: str) -> list[str]:
    """A comma list of backend names (``bench``), each known, none twice."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in backend_names()]
    if not names or unknown:
        raise HarnessError(
            f"--backend: unknown backend {', '.join(unknown) or repr(text)}; known: {', '.join(backend_names())}"
        )
    if len(set(names)) != len(names):
        raise HarnessError(f"--backend: {text!r} names a backend twice")
    return names


def default_threads() -> int:
    """The thread count a run takes when none is given: torch's own default for this process."""
    return torch.get_num_threads()
