"""``harness package results|verify|code``: Codalab results zips and code submissions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import BoundaryGroup, DataOpt, JsonOpt, TrustCodeOpt, console, emit_json

package_app = typer.Typer(
    cls=BoundaryGroup,
    no_args_is_help=True,
    help="Codalab results zips and code-submission zips, verified the way the server reads them.",
)


@package_app.command("results")
def results_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A `harness evaluate` run folder to zip.")],
    out: Annotated[Path | None, typer.Option(help="Zip to write.", show_default="RUN_DIR/submission.zip")] = None,
    expect_scenes: Annotated[
        str | None, typer.Option(help="Scene numbers the zip must hold.", show_default="the run's")
    ] = None,
) -> None:
    """Zip a run's outputs after every check the server would fail them for."""
    from harness.package.results import package_results

    target = out or run_dir / "submission.zip"
    package_results(run_dir, target, expect_scenes)
    console.print(f"wrote {target}")


@package_app.command("verify")
def verify_cmd(
    zip_path: Annotated[Path, typer.Argument(metavar="ZIP", help="A results zip, from anyone.")],
    gt: Annotated[Path | None, typer.Option(help="Score against this ground-truth folder.")] = None,
    expect_scenes: Annotated[str | None, typer.Option(help="Scene numbers the zip must hold, e.g. 300-359.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Read a results zip as the server did (safely), and score it with --gt."""
    from harness.package.results import verify_zip

    report = verify_zip(zip_path, gt, expect_scenes)
    if as_json:
        emit_json(report)
        return
    console.print(
        f"{zip_path}: the server reads {len(report['outputs'])} output(s) from '{report['folder_read']}', sizes {report['shapes']}"
    )
    for note in report["notes"]:
        console.print(f"note: {note}")
    if gt is not None:
        console.print(
            f"PSNR {report['psnr']:.4f} dB, SSIM {report['ssim']:.5f} (server), {report['ssim_standard']:.5f} (standard)"
        )


@package_app.command("code")
def code_cmd(
    manifest: Annotated[
        Path,
        typer.Argument(
            help="A manifest (TOML), such as those in submissions/; or someone else's submission folder or zip, to verify."
        ),
    ],
    out: Annotated[Path | None, typer.Option(help="Zip to write.", show_default="code_ID_NAME.zip")] = None,
    verify: Annotated[
        bool, typer.Option(help="Run its test_demo.py without harness and compare outputs with evaluate.")
    ] = False,
    trust_code: TrustCodeOpt = None,
    data: DataOpt = None,
) -> None:
    """Write the code submission of a manifest (models/, model_zoo/, test_demo.py, factsheet), or verify a submission."""
    from harness.errors import HarnessError
    from harness.package.code import package_code, read_manifest, verify_code, verify_submission
    from harness.progress import progress_bar

    if manifest.suffix != ".toml":
        if verify:
            raise HarnessError(
                f"{manifest}: --verify runs the test_demo.py of a submission we package; somebody else's test_demo.py "
                "is never run here (it would run unsandboxed): without --verify, its model is built as its "
                "test_demo.py builds it and its outputs are checked"
            )
        with progress_bar("verifying") as advance:
            advance(0, 0, f"{manifest}: building the model and running it on the validation scenes")
            result = verify_submission(manifest, bool(trust_code), data)
        console.print(
            f"verified: {result['source']['name']} from {manifest}, {result['parameters']:,} parameters, "
            f"outputs checked on {result['scenes']} scene(s), PSNR {result['psnr']:.4f} dB"
        )
        return
    target = out or Path(f"code_{read_manifest(manifest).stem}.zip")
    with progress_bar("packaging") as advance:
        advance(0, 0, f"{target}")
        package_code(manifest, target)
    console.print(f"wrote {target}")
    if verify:
        with progress_bar("verifying") as advance:
            advance(0, 0, "test_demo.py in a fresh interpreter, then harness evaluate")
            result = verify_code(target, manifest, data)
        console.print(
            f"verified: test_demo.py outputs byte-identical to harness evaluate on {result['scenes']} scene(s)"
        )
