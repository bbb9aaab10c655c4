"""The command line as a whole: sub-commands, deprecated flags, defaults owned by the library."""

from __future__ import annotations

import zipfile

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.cli.package import legacy_args
from harness.evaluate import EvalConfig
from harness.train.loop import TrainConfig

runner = CliRunner()


@pytest.mark.parametrize(
    "old,new",
    [
        (["runs/x", "--out", "s.zip"], ["results", "runs/x", "--out", "s.zip"]),
        (["--verify", "s.zip", "--gt", "data"], ["verify", "s.zip", "--gt", "data"]),
        (["--code", "m.toml", "--verify-code"], ["code", "m.toml", "--verify"]),
        (["--out", "c.zip", "--code", "m.toml", "--no-verify-code"], ["code", "m.toml", "--out", "c.zip", "--no-verify"]),
    ],
)
def test_old_package_flags_map_to_sub_commands(old, new):
    assert legacy_args(old)[0] == new


def test_old_and_new_package_forms_write_the_same_zip(tmp_path, small_data):
    run = tmp_path / "run"
    assert runner.invoke(app, ["evaluate", "--model", "demosaic", "--data", str(small_data), "--out", str(run)]).exit_code == 0
    new = runner.invoke(app, ["package", "results", str(run), "--out", str(tmp_path / "new.zip")])
    old = runner.invoke(app, ["package", str(run), "--out", str(tmp_path / "old.zip")])
    assert new.exit_code == 0 and old.exit_code == 0, old.output
    assert "deprecated" in old.stderr and "deprecated" not in new.output
    assert (tmp_path / "new.zip").read_bytes() == (tmp_path / "old.zip").read_bytes()
    verify = runner.invoke(app, ["package", "verify", str(tmp_path / "new.zip"), "--gt", str(small_data)])
    assert verify.exit_code == 0 and "the server reads 3 output(s)" in verify.output


def test_package_code_does_not_verify_unless_asked(tmp_path, monkeypatch):
    import harness.package.code as code

    monkeypatch.setattr(code, "verify_code", lambda *a, **k: pytest.fail("verified without --verify"))
    result = runner.invoke(app, ["package", "code", "submissions/flowcnrdb_tiny.toml", "--out", str(tmp_path / "c.zip")])
    assert result.exit_code == 0, result.output
    assert "test_demo.py" in zipfile.ZipFile(tmp_path / "c.zip").namelist()
    old = runner.invoke(app, ["package", "--code", "submissions/flowcnrdb_tiny.toml", "--out", str(tmp_path / "d.zip"), "--no-verify-code"])
    assert old.exit_code == 0, old.output


def _help(*command: str) -> str:
    return runner.invoke(app, [*command, "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"}).output


def test_help_shows_the_librarys_defaults_and_choices():
    text = _help("evaluate")
    assert "floor|round" in text and "train|val|all|test" in text and "auto|cpu|cuda" in text
    assert f"[default: ({EvalConfig.__dataclass_fields__['quantize'].default.value})]" in text
    train = _help("train")
    assert f"[default: ({TrainConfig.iters})]" in train and f"[default: ({TrainConfig.model})]" in train


def test_version():
    import harness

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"harness {harness.__version__}"


def test_an_error_prints_nothing_but_the_error(tmp_path):
    result = runner.invoke(app, ["evaluate", "--model", "demosaic", "--data", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if line.strip()] == [f"error: {tmp_path / 'none'}: no such data folder"]
