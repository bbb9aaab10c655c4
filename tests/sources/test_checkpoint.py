"""Strict, safe checkpoint loading: every accepted wrapper and every refused case."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from harness import create_model, load_checkpoint
from harness.checkpoint import CheckpointError
from harness.cli import app

TINY = dict(
    train_size=32,
    stem_width=8,
    stem_depth=1,
    reg_widths=(8, 8, 8, 8, 8),
    reg_depths=(1, 1, 1, 1, 1),
    merge_base_channels=8,
    merge_grow_channels=4,
    merge_depth=1,
    merge_features=8,
)


def _model(seed: int = 0):
    torch.manual_seed(seed)
    model = create_model("flowcnrdb", **TINY)
    for p in model.parameters():  # zero-initialised layers too: make every tensor distinct
        torch.nn.init.normal_(p, std=0.1)
    return model


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd},
        lambda sd: {"model": sd},
        lambda sd: {"params": sd},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": {f"_orig_mod.{k}": v for k, v in sd.items()}},
    ],
    ids=["raw", "state_dict", "model", "params", "module-prefix", "orig_mod-prefix"],
)
def test_accepted_wrappers(tmp_path, wrap):
    src, dst = _model(0), _model(1)
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(src.state_dict()), path)
    load_checkpoint(dst, path)
    assert _same(src, dst)


def test_safetensors(tmp_path):
    src, dst = _model(0), _model(1)
    path = tmp_path / "ckpt.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    load_checkpoint(dst, path)
    assert _same(src, dst)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def _bad_files(tmp_path):
    good = _model(0).state_dict()
    cases = {}
    cases["missing"] = tmp_path / "does-not-exist.pth"
    (tmp_path / "text.pth").write_text("not a checkpoint\n")
    cases["not-a-checkpoint"] = tmp_path / "text.pth"
    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"weight": Evil()}, fh)
    cases["unsafe-pickle"] = tmp_path / "evil.pth"
    torch.save({"a": 1, "b": "x"}, tmp_path / "nontensor.pth")
    cases["not-a-state-dict"] = tmp_path / "nontensor.pth"
    partial = dict(good)
    partial.pop(next(iter(partial)))
    partial["extra.weight"] = torch.zeros(1)
    torch.save(partial, tmp_path / "keys.pth")
    cases["wrong-keys"] = tmp_path / "keys.pth"
    shapes = dict(good)
    shapes["stem.patch.weight"] = torch.zeros(3, 1, 2, 2)
    torch.save(shapes, tmp_path / "shapes.pth")
    cases["wrong-shape"] = tmp_path / "shapes.pth"
    (tmp_path / "bad.safetensors").write_bytes(b"\x00\x01garbage")
    cases["bad-safetensors"] = tmp_path / "bad.safetensors"
    return cases


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "not-a-checkpoint",
        "unsafe-pickle",
        "not-a-state-dict",
        "wrong-keys",
        "wrong-shape",
        "bad-safetensors",
    ],
)
def test_refused_cleanly_and_nothing_loaded(tmp_path, case, capsys):
    path = _bad_files(tmp_path)[case]
    model = _model(1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(model, path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "pwned" not in capsys.readouterr().out
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    if case == "wrong-keys":
        assert "1 missing (stem.patch.weight)" in message and "1 unexpected (extra.weight)" in message
    if case == "wrong-shape":
        assert "wrong shape" in message and "stem.patch.weight" in message


@pytest.mark.parametrize("case", ["missing", "not-a-checkpoint", "unsafe-pickle", "wrong-keys", "wrong-shape"])
def test_cli_exits_2_with_one_line(tmp_path, small_data, case):
    path = _bad_files(tmp_path)[case]
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            "flowcnrdb_tiny",
            "--weights",
            str(path),
            "--data",
            str(small_data),
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and path.name in errors[0]
    assert not (tmp_path / "run" / "res").exists()
