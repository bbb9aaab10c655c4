"""``harness bench``."""

from __future__ import annotations

from typing import Annotated

import typer

from harness.challenge import parse_size
from harness.cli.common import (
    BACKEND_HELP,
    OFFICIAL_SIZE,
    DeviceOpt,
    JsonOpt,
    ModelArgsOpt,
    ModelOpt,
    PrecisionOpt,
    SizeOpt,
    ThreadsOpt,
    TrustCodeOpt,
    WeightsOpt,
    console,
    emit_json,
    given,
    print_error,
)


def bench_cmd(
    model: ModelOpt,
    model_args: ModelArgsOpt = None,
    trust_code: TrustCodeOpt = None,
    weights: WeightsOpt = None,
    size: SizeOpt = OFFICIAL_SIZE,
    device: DeviceOpt = None,
    backend: Annotated[
        str, typer.Option("--backend", help="A comma list of backends, each timed in its own process. " + BACKEND_HELP)
    ] = "auto",
    threads: ThreadsOpt = None,
    warmup: Annotated[int, typer.Option(help="Untimed passes first.", min=0)] = 1,
    repeats: Annotated[int, typer.Option(help="Timed passes (median and IQR).", min=1)] = 3,
    precision: PrecisionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Latency and peak memory of a model through each backend, each in a fresh process, with the machine described.

    Exit 1 when the equivalence gate refused a backend.
    """
    from harness.backends import parse_backends
    from harness.bench import bench
    from harness.options import BenchConfig
    from harness.progress import progress_bar

    cfg = BenchConfig(
        model,
        parse_size(size),
        **given(
            device=device,
            threads=threads,
            model_args=model_args,
            trust_code=trust_code,
            weights=str(weights) if weights else None,
            precision=precision,
        ),
        warmup=warmup,
        repeats=repeats,
        backends=parse_backends(backend),
    )
    with progress_bar("timing") as advance:
        advance(0, 0, f"{model} at {size}, {warmup} warm-up + {repeats} timed pass(es) per backend")
        doc = bench(cfg)
    for warning in doc["warnings"]:
        print_error(warning, "warning:", "yellow")
    refused = [run for run in doc["runs"] if run["refused"]]
    if as_json:
        emit_json(doc)
    else:
        _print(doc)
    for run in refused:
        print_error(run["refused"])
    if refused:
        raise typer.Exit(1)


def _print(doc: dict) -> None:
    m, gpu = doc["machine"], doc["machine"]["gpu"]
    on = f"{gpu['name']}, CUDA {gpu['cuda']}; host " if gpu else ""
    amx = ", AMX" if m["amx"] else ""
    console.print(
        f"{doc['model']} at {doc['size'][0]}x{doc['size'][1]} on {doc['device']} ({on}{m['cpu']}, ISA {m['isa']}{amx}, "
        f"{m['cores']} cores, torch {m['torch']}, load {m['load_average'][0]})"
    )
    console.print(f"  allocator: {doc['runs'][0]['allocator']}")
    for reason in doc["skipped"].values():
        console.print(f"  skipped: {reason}")
    for run in doc["runs"]:
        ratio = "" if run["speedup_vs_eager_fp32"] is None else f", {run['speedup_vs_eager_fp32']:.2f}x eager fp32"
        gate = run["gate"]
        checked = (
            "the reference"
            if gate is None
            else ("REFUSED by the gate" if run["refused"] else f"gate: max |diff| {gate['max_abs_diff']:.3g}")
        )
        console.print(
            f"  {run['backend']:>11} {run['precision']}: median {run['median_seconds']:.3f} s (IQR {run['iqr_seconds']:.3f} s{ratio}), "
            f"set-up {run['setup_seconds']:.1f} s, {run['threads']} thread(s), peak {run['peak_memory_mb']:.0f} MB; {checked}"
        )


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_cmd)
