"""``harness bench``."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from harness.cli.common import OFFICIAL_SIZE, DeviceOpt, JsonOpt, PrecisionOpt, ModelArgsOpt, ModelOpt, SizeOpt, TrustCodeOpt, WeightsOpt, console, emit_json, given, parse_size, print_error


def bench_cmd(
    model: ModelOpt,
    model_args: ModelArgsOpt = None,
    trust_code: TrustCodeOpt = None,
    weights: WeightsOpt = None,
    size: SizeOpt = OFFICIAL_SIZE,
    device: DeviceOpt = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (torch.set_num_threads).", min=1, show_default="torch's")] = None,
    warmup: Annotated[int, typer.Option(help="Untimed passes first.", min=0)] = 1,
    repeats: Annotated[int, typer.Option(help="Timed passes (median and IQR).", min=1)] = 3,
    precision: PrecisionOpt = None,
    compare_faithful: Annotated[bool, typer.Option(help="Also time set_fast(False) in float32 and report the output difference.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Latency and peak memory of a model, each configuration in a fresh process, with the machine described."""
    from harness.bench import BenchConfig, bench
    from harness.progress import progress_bar

    cfg = BenchConfig(model, parse_size(size), **given(device=device, threads=threads, model_args=model_args, trust_code=trust_code,
                      weights=str(weights) if weights else None, precision=precision), warmup=warmup, repeats=repeats, compare_faithful=compare_faithful)
    with progress_bar("timing") as advance:
        advance(0, 0, f"{model} at {size}, {warmup} warm-up + {repeats} timed pass(es) per path")
        doc = bench(cfg)
    for warning in doc["warnings"]:
        print_error(warning, "warning:", "yellow")
    if as_json:
        emit_json(doc)
        return
    m, gpu = doc["machine"], doc["machine"]["gpu"]
    on = f"{gpu['name']}, CUDA {gpu['cuda']}; host " if gpu else ""
    console.print(f"{model} at {size} on {doc['device']} ({on}{m['cpu']}, {m['cores']} cores, torch {m['torch']}, load {m['load_average'][0]})")
    console.print(f"  allocator: {doc['runs'][0]['allocator']}")
    for run in doc["runs"]:
        console.print(f"  {run['path']:>8} {run['precision']}: median {run['median_seconds']:.3f} s (IQR {run['iqr_seconds']:.3f} s) over "
                      f"{len(run['seconds'])} pass(es), {run['threads']} thread(s), peak memory {run['peak_memory_mb']:.0f} MB")
    if doc["faithful_max_abs_diff"] is not None:
        fast, faithful = doc["runs"][0]["median_seconds"], doc["runs"][1]["median_seconds"]
        console.print(f"  fast path {faithful / fast:.2f}x faster than the faithful one; max |difference| {doc['faithful_max_abs_diff']:.3g}")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)
