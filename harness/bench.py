"""``harness bench``: the latency protocol of efficiency challenges, for any model source.

Each measured configuration runs in a fresh process (so one model's peak memory never hides another's):
``warmup`` untimed forward passes, then ``repeats`` timed ones on one seeded random burst under
``torch.inference_mode`` (CUDA events and synchronisation on a GPU); the median and inter-quartile range of
the timed passes, and the peak memory (the process's RSS high-water mark on the CPU,
``max_memory_allocated`` on a GPU), with the allocator settings it ran under (:mod:`harness.allocator`:
each worker starts with glibc's thread cache off). The machine is described (CPU model, cores, threads used, torch version,
load average at start) and a busy machine is named in a warning: its figures are not a quiet machine's.
Weights are ``--weights`` (or a submission's own), else seeded random weights of realistic scale.
``precision`` bf16 runs the model in bfloat16 (``harness.inference.precision_mode``). ``compare_faithful``
also times a model's faithful path (``set_fast(False)``, in float32) and reports the largest difference
between the two outputs.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.allocator import without_tcache
from harness.challenge import IMAGE_SIZE, NUM_FRAMES
from harness.errors import HarnessError
from harness.inference import Device, Precision, check_precision, describe_gpu, precision_mode, resolve_device

BUSY_LOAD = 0.5  # load average per core above which the machine counts as busy


@dataclass
class BenchConfig:
    model: str
    size: tuple[int, int] = IMAGE_SIZE
    device: Device = Device.auto
    threads: int | None = None  # None: torch's default
    warmup: int = 1
    repeats: int = 3
    model_args: str | None = None
    trust_code: bool = False
    weights: str | None = None  # None: seeded random weights of realistic scale (N(0, 0.02))
    precision: Precision = Precision.fp32
    compare_faithful: bool = False
    paths: list[str] = field(default_factory=list)  # filled in: which paths are timed

    def __post_init__(self) -> None:
        self.precision = Precision(self.precision)


def machine(device: torch.device | None = None) -> dict[str, Any]:
    """What the figures were measured on: the host, and on a CUDA ``device`` the GPU (else ``gpu`` is None)."""
    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        pass
    load = os.getloadavg()
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "load_average": [round(v, 2) for v in load],
            "gpu": describe_gpu(device)}


def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One configuration, in this (fresh) process: build, warm up, time, measure, save the output."""
    from harness.allocator import describe, keep_freed_memory
    from harness.sources import parse_model_args, resolve_model

    allocator = describe(keep_freed_memory())
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    model, source = resolve_model(spec["model"], parse_model_args(spec["model_args"]), spec["trust_code"])
    if spec["weights"] or source.weights:
        from harness.checkpoint import load_checkpoint

        load_checkpoint(model, spec["weights"] or source.weights)
    else:  # seeded random weights of a realistic scale (zero-initialised layers would make every path agree trivially)
        torch.manual_seed(0)
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.02)
    model.eval().to(device)
    precision = Precision(spec["precision"])
    if spec["path"] == "faithful":
        model.set_fast(False)
        precision = Precision.fp32
    torch.manual_seed(0)
    x = torch.rand(1, NUM_FRAMES, *spec["size"]).to(device)
    with precision_mode(model, precision, device):
        seconds = _timed(model, x, device, spec["warmup"], spec["repeats"])
        with torch.inference_mode():
            out = model(x).float().cpu()
    torch.save(out, spec["output"])
    return {"path": spec["path"], "precision": precision.value, "seconds": seconds, "peak_memory_mb": _peak_mb(device), "threads": torch.get_num_threads(),
            "allocator": allocator}


def _timed(model: torch.nn.Module, x: torch.Tensor, device: torch.device, warmup: int, repeats: int) -> list[float]:
    import time

    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                model(x)
                end.record()
                torch.cuda.synchronize(device)
                elapsed = start.elapsed_time(end) / 1000
            else:
                t0 = time.perf_counter()
                model(x)
                elapsed = time.perf_counter() - t0
            if i >= warmup:
                times.append(elapsed)
    return times


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


def _measure(cfg: BenchConfig, path: str, device: torch.device, output: Path) -> dict[str, Any]:
    spec = {"model": cfg.model, "model_args": cfg.model_args, "trust_code": cfg.trust_code, "threads": cfg.threads,
            "weights": cfg.weights, "precision": cfg.precision.value,
            "device": str(device), "size": list(cfg.size), "warmup": cfg.warmup, "repeats": cfg.repeats, "path": path,
            "output": str(output)}
    proc = subprocess.run([sys.executable, "-m", "harness.bench", json.dumps(spec)], capture_output=True, text=True,
                          env=without_tcache(os.environ))  # None (inherit) when already set
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise HarnessError(f"bench of {cfg.model} ({path} path) failed: {last}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    q1, median, q3 = np.percentile(result["seconds"], [25, 50, 75])
    return {**result, "median_seconds": float(median), "iqr_seconds": float(q3 - q1)}


def bench(cfg: BenchConfig) -> dict[str, Any]:
    """Time ``cfg.model`` (and its faithful path with ``compare_faithful``); the document of ``harness bench --json``."""
    if cfg.warmup < 0 or cfg.repeats < 1:
        raise HarnessError("--warmup must be at least 0 and --repeats at least 1")
    device = resolve_device(cfg.device)
    check_precision(cfg.precision, device)
    from harness.sources import parse_model_args, resolve_model

    model, source = resolve_model(cfg.model, parse_model_args(cfg.model_args), cfg.trust_code)
    if cfg.compare_faithful and not hasattr(model, "set_fast"):
        raise HarnessError(f"--compare-faithful: {cfg.model} has no fast path (no set_fast)")
    start = machine(device)
    paths = ["default", "faithful"] if cfg.compare_faithful else ["default"]
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
        runs = [_measure(cfg, p, device, Path(tmp) / f"{p}.pt") for p in paths]
        diff = None
        if cfg.compare_faithful:
            a, b = (torch.load(Path(tmp) / f"{p}.pt", weights_only=True) for p in paths)
            diff = float((a - b).abs().max())
    warnings = []
    if start["load_average"][0] > BUSY_LOAD * (start["cores"] or 1):
        warnings.append(f"the machine is busy (load average {start['load_average'][0]} on {start['cores']} cores): "
                        "these figures are not a quiet machine's")
    return {"model": cfg.model, "source": source.as_dict(), "size": list(cfg.size), "device": str(device),
            "precision": cfg.precision.value,
            "warmup": cfg.warmup, "repeats": cfg.repeats, "machine": start, "runs": runs,
            "faithful_max_abs_diff": diff, "warnings": warnings, "config": {k: v for k, v in asdict(cfg).items() if k != "paths"}}


if __name__ == "__main__":  # the worker of one measurement, in a fresh process
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
