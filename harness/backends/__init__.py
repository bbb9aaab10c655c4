"""Inference backends: one interface (:mod:`harness.backends.base`), several ways to run a model, one gate.

``eager`` (the model as written), ``fast`` (FlowCNRDB's CPU path), ``compile``
(Inductor), ``onnxruntime`` and ``openvino`` (exported); ``auto`` takes
``fast`` for a FlowCNRDB variant on a CPU and ``eager`` otherwise. Every
non-reference run is held to eager float32 on its first burst
(:mod:`harness.backends.gate`).
"""

from __future__ import annotations

from harness.backends.base import Backend, BackendUnavailable, Prepared, Settings
from harness.backends.gate import GateResult, NotEquivalent
from harness.backends.registry import AUTO, BACKENDS, backend_names, choose_backend, parse_backends, register_backend
from harness.backends.runner import Runner, prepare_runner

__all__ = [
    "AUTO",
    "BACKENDS",
    "Backend",
    "BackendUnavailable",
    "GateResult",
    "NotEquivalent",
    "Prepared",
    "Runner",
    "Settings",
    "backend_names",
    "choose_backend",
    "parse_backends",
    "prepare_runner",
    "register_backend",
]
