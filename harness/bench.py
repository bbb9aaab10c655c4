"""``harness bench``: the latency protocol of efficiency challenges, for any model source and backend.

Each backend runs in a fresh process (so one run's peak memory never hides another's): the model is
prepared by the backend (export or compilation timed as set-up), then ``warmup`` untimed and ``repeats``
timed forward passes on one seeded random burst (CUDA events and synchronisation on a GPU), with the
thread count set explicitly around each pass; the median and inter-quartile range of the timed passes, the
peak memory (the process's RSS high-water mark on the CPU, ``max_memory_allocated`` on a GPU) taken before
the equivalence gate runs the model as written on the same burst. Each worker starts with glibc's thread
cache off and keeps freed memory (:mod:`harness.allocator`): the allocator is the runner's. The machine is
described (CPU model, ISA, AMX, cores, torch version, load average at start) and a busy machine is named in
a warning. Weights follow :func:`harness.loading.load_model` (``--weights``, a submission's own, bundled,
a factory's), else random weights of a realistic scale (N(0, 0.02), seed 0).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.allocator import without_tcache
from harness.challenge import NUM_FRAMES
from harness.errors import HarnessError
from harness.inference import check_precision, describe_gpu, peak_memory_mb, resolve_device
from harness.options import BenchConfig, Precision

BUSY_LOAD = 0.5  # load average per core above which the machine counts as busy


def machine(device: torch.device | None = None) -> dict[str, Any]:
    """What the figures were measured on: the host, and on a CUDA ``device`` the GPU (else ``gpu`` is None)."""
    model = ""
    try:
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    except OSError:
        pass
    load = os.getloadavg()
    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": [round(v, 2) for v in load],
        **cpu_isa(),
        "gpu": describe_gpu(device),
    }


def cpu_isa() -> dict[str, Any]:
    """The vector ISA torch's kernels use here, and whether the CPU has AMX tiles and AVX512-BF16."""
    return {
        "isa": torch.backends.cpu.get_cpu_capability(),
        "amx": bool(torch.cpu._is_amx_tile_supported()),
        "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
    }


def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One backend, in this (fresh) process: build, prepare, warm up, time, measure, gate."""
    from harness.allocator import describe, keep_freed_memory
    from harness.backends import NotEquivalent, prepare_runner
    from harness.backends.base import torch_threads
    from harness.loading import load_model
    from harness.sources import parse_model_args

    allocator = describe(keep_freed_memory())
    device = torch.device(spec["device"])
    model = load_model(
        spec["model"], parse_model_args(spec["model_args"]), spec["trust_code"], spec["weights"], or_random=True
    ).model
    model.eval().to(device)
    precision = Precision(spec["precision"])
    runner = prepare_runner(model, spec["backend"], device, precision, tuple(spec["size"]), spec["threads"])
    torch.manual_seed(0)
    x = torch.rand(1, NUM_FRAMES, *spec["size"])
    with torch_threads(runner.settings.threads):
        seconds = _timed(runner.prepared, x, device, spec["warmup"], spec["repeats"])
    peak = peak_memory_mb(device)
    try:
        runner(x)
        refused = None
    except NotEquivalent as exc:
        refused = str(exc)
    return {**runner.describe(), "seconds": seconds, "peak_memory_mb": peak, "allocator": allocator, "refused": refused}


def _timed(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device, warmup: int, repeats: int
) -> list[float]:
    import time

    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            forward(x)
            end.record()
            torch.cuda.synchronize(device)
            elapsed = start.elapsed_time(end) / 1000
        else:
            t0 = time.perf_counter()
            forward(x)
            elapsed = time.perf_counter() - t0
        if i >= warmup:
            times.append(elapsed)
    return times


def _measure(cfg: BenchConfig, backend: str, device: torch.device) -> dict[str, Any]:
    spec = {
        "model": cfg.model,
        "model_args": cfg.model_args,
        "trust_code": cfg.trust_code,
        "threads": cfg.threads,
        "weights": cfg.weights,
        "precision": cfg.precision.value,
        "backend": backend,
        "device": str(device),
        "size": list(cfg.size),
        "warmup": cfg.warmup,
        "repeats": cfg.repeats,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "harness.bench", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=without_tcache(os.environ),
    )  # None (inherit) when already set
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise HarnessError(f"bench of {cfg.model} (backend {backend}) failed: {last}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    q1, median, q3 = np.percentile(result["seconds"], [25, 50, 75])
    return {**result, "median_seconds": float(median), "iqr_seconds": float(q3 - q1)}


def bench(cfg: BenchConfig) -> dict[str, Any]:
    """Time ``cfg.model`` through each of ``cfg.backends``; the document of ``harness bench --json``."""
    from harness.backends import BackendUnavailable, Settings, choose_backend
    from harness.backends.registry import default_threads
    from harness.sources import parse_model_args, resolve_model

    if cfg.warmup < 0 or cfg.repeats < 1:
        raise HarnessError("--warmup must be at least 0 and --repeats at least 1")
    device = resolve_device(cfg.device)
    check_precision(cfg.precision, device)
    model, source = resolve_model(cfg.model, parse_model_args(cfg.model_args), cfg.trust_code)
    settings = Settings(device, cfg.precision, cfg.threads or default_threads())
    skipped = {}
    for name in cfg.backends:  # decided before anything runs: a backend that cannot serve is skipped with its reason
        try:
            choose_backend(name, model, settings)
        except BackendUnavailable as exc:
            skipped[name] = str(exc)
    if len(skipped) == len(cfg.backends):
        raise HarnessError("; ".join(skipped.values()))
    start = machine(device)
    runs = [_measure(cfg, name, device) for name in cfg.backends if name not in skipped]
    eager = next((r["median_seconds"] for r in runs if r["backend"] == "eager" and r["precision"] == "fp32"), None)
    for r in runs:
        r["speedup_vs_eager_fp32"] = None if eager is None else eager / r["median_seconds"]
    warnings = []
    if start["load_average"][0] > BUSY_LOAD * (start["cores"] or 1):
        warnings.append(
            f"the machine is busy (load average {start['load_average'][0]} on {start['cores']} cores): "
            "these figures are not a quiet machine's"
        )
    return {
        "model": cfg.model,
        "source": source.as_dict(),
        "size": list(cfg.size),
        "device": str(device),
        "precision": cfg.precision.value,
        "warmup": cfg.warmup,
        "repeats": cfg.repeats,
        "machine": start,
        "runs": runs,
        "skipped": skipped,
        "warnings": warnings,
        "config": asdict(cfg),
    }


if __name__ == "__main__":  # the worker of one measurement, in a fresh process
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
