"""The bundled flowcnrdb_tiny weights: integrity, quality on the embedded data, the code submission."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from harness import create_model, load_checkpoint, model_entry
from harness.cli import app
from harness.io import sha256_file
from harness.package.code import package_code, verify_code

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_weights_file_is_what_the_registry_says():
    info = model_entry("flowcnrdb_tiny").weights
    assert info is not None and info.path.is_file()
    assert info.path.stat().st_size < 5 * 1024**2
    assert sha256_file(info.path) == info.sha256
    load_checkpoint(create_model("flowcnrdb_tiny"), info.path)


def test_bundled_tiny_beats_demosaic_by_4_db_and_reaches_30(tmp_path):
    scores = {}
    for model in ("flowcnrdb_tiny", "demosaic"):
        result = runner.invoke(app, ["evaluate", "--model", model, "--out", str(tmp_path / model), "--no-report"])
        assert result.exit_code == 0, result.output
        scores[model] = json.loads((tmp_path / model / "summary.json").read_text())["psnr"]
    print(
        f"embedded validation: flowcnrdb_tiny {scores['flowcnrdb_tiny']:.3f} dB, demosaic {scores['demosaic']:.3f} dB"
    )
    assert scores["flowcnrdb_tiny"] >= 30.0
    assert scores["flowcnrdb_tiny"] - scores["demosaic"] >= 4.0


def test_tiny_code_submission_verifies_byte_identical(tmp_path):
    manifest = ROOT / "submissions" / "flowcnrdb_tiny.toml"
    zip_path = package_code(manifest, tmp_path / "code.zip")
    result = verify_code(zip_path, manifest)
    assert result["identical"] and result["scenes"] == 8
