"""The command line as a whole: sub-commands, defaults owned by the library."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import zipfile

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.options import EvalConfig, TrainConfig

runner = CliRunner()


def test_package_sub_commands_write_and_read_the_zip_and_the_old_single_command_is_gone(tmp_path, small_data):
    run = tmp_path / "run"
    assert (
        runner.invoke(app, ["evaluate", "--model", "demosaic", "--data", str(small_data), "--out", str(run)]).exit_code
        == 0
    )
    new = runner.invoke(app, ["package", "results", str(run), "--out", str(tmp_path / "new.zip")])
    assert new.exit_code == 0, new.output
    verify = runner.invoke(app, ["package", "verify", str(tmp_path / "new.zip"), "--gt", str(small_data)])
    assert verify.exit_code == 0 and "the server reads 3 output(s)" in verify.output
    old = runner.invoke(app, ["package", str(run), "--out", str(tmp_path / "old.zip")])
    assert old.exit_code == 2 and not (tmp_path / "old.zip").exists()


def test_package_code_does_not_verify_unless_asked(tmp_path, monkeypatch):
    import harness.package.code as code

    monkeypatch.setattr(code, "verify_code", lambda *a, **k: pytest.fail("verified without --verify"))
    result = runner.invoke(
        app, ["package", "code", "submissions/flowcnrdb_tiny.toml", "--out", str(tmp_path / "c.zip")]
    )
    assert result.exit_code == 0, result.output
    assert "test_demo.py" in zipfile.ZipFile(tmp_path / "c.zip").namelist()
    explicit = runner.invoke(
        app, ["package", "code", "submissions/flowcnrdb_tiny.toml", "--out", str(tmp_path / "d.zip"), "--no-verify"]
    )
    assert explicit.exit_code == 0, explicit.output


def _help(*command: str) -> str:
    """The help of ``harness COMMAND`` with its line breaks made spaces."""
    return " ".join(runner.invoke(app, [*command, "--help"], env={"COLUMNS": "250"}).output.split())


def test_help_shows_the_librarys_defaults_and_choices():
    text = _help("evaluate")
    assert "floor|round" in text and "train|val|all|test" in text and "auto|cpu|cuda" in text
    assert f"[default: ({EvalConfig.__dataclass_fields__['quantize'].default.value})]" in text
    train = _help("train")
    assert f"[default: ({TrainConfig.iters})" in train and f"[default: ({TrainConfig.model})]" in train


def test_version():
    import harness

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"harness {harness.__version__}"


HEAVY = ("torch", "numpy", "pandas", "scipy", "skimage", "tifffile", "fvcore", "onnxruntime", "openvino")
IMPORTS_AFTER = """
import sys
from harness.cli import main
sys.argv = ["harness", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print("HEAVY:", sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY)))
"""


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["evaluate", "--help"], ["budget", "--help"]])
def test_version_and_help_import_nothing_heavy_and_answer_within_half_a_second(args):
    code = f"HEAVY = {HEAVY!r}\n{IMPORTS_AFTER}"
    shown = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True).stdout
    assert "HEAVY: []" in shown, shown.splitlines()[-1]
    command = shutil.which("harness") or pytest.fail("the harness console script is not installed")
    best = min(_seconds(lambda: subprocess.run([command, *args], capture_output=True, check=True)) for _ in range(3))
    assert best < 0.5, f"harness {' '.join(args)} took {best:.2f} s"


def _seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def test_an_error_prints_nothing_but_the_error(tmp_path):
    result = runner.invoke(app, ["evaluate", "--model", "demosaic", "--data", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if line.strip()] == [
        f"error: {tmp_path / 'none'}: no such data folder"
    ]


def test_progress_off_a_terminal_is_plain_lines(tmp_path, small_data):
    command = shutil.which("harness") or pytest.fail("the harness console script is not installed")
    args = ["evaluate", "--model", "demosaic", "--data", str(small_data), "--out", str(tmp_path / "run"), "--no-report"]
    done = subprocess.run([command, *args], capture_output=True, text=True, check=True)
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith("evaluating: ") for line in lines), done.stderr
    assert lines[-1].startswith("evaluating: 3/3 Scene-282") and "\x1b" not in done.stderr


def _at_80_columns(*args: str) -> str:
    command = shutil.which("harness") or pytest.fail("the harness console script is not installed")
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    return subprocess.run([command, *args], capture_output=True, text=True, env=env, check=True).stdout


def test_at_80_columns_lines_fit_and_no_name_is_broken():
    from harness.registry import list_models

    shown = {
        "models": _at_80_columns("models"),
        "budget": _at_80_columns("budget", "--model", "flowcnrdb_tiny", "--size", "64x128"),
        "bench help": _at_80_columns("bench", "--help"),
    }
    for label, text in shown.items():
        assert max(map(len, text.splitlines())) <= 80 and "…" not in text, label
    assert set(list_models()) <= set(re.findall(r"\b[a-z_]+\b", shown["models"]))
    assert all(f" {name} " in shown["budget"] for name in ("ptflops_pytorch", "flop_counter_mode", "ptflops_aten"))
    assert "package.module:NAME" in shown["bench help"] and "<bool>" not in shown["bench help"]
    assert re.search(r"^\s+--trust-code\s+Import", shown["bench help"], re.M)
