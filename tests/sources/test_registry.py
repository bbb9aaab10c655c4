"""The registry: names, overrides, duplicates, unknown names, the `models` command."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from harness import create_model, list_models
from harness.cli import app
from harness.errors import HarnessError
from harness.registry import register_model

EXPECTED = {
    "flowcnrdb",
    "flowcnrdb_small",
    "flowcnrdb_tiny",
    "flowcnrdb_nomask",
    "flowcnrdb_noalign",
    "flowcnrdb_homography",
    "unet_baseline",
    "demosaic",
}


def test_all_variants_registered():
    assert EXPECTED <= set(list_models())
    assert list_models("flowcnrdb_n*") == ["flowcnrdb_noalign", "flowcnrdb_nomask"]


def test_unknown_model_names_the_known_ones():
    with pytest.raises(HarnessError, match="unknown model 'nope'; known: demosaic, flowcnrdb"):
        create_model("nope")


def test_duplicate_registration_refused():
    with pytest.raises(ValueError, match="registered twice"):

        @register_model("x", "dup")
        def flowcnrdb():
            raise AssertionError


def test_none_overrides_are_dropped_and_others_win():
    model = create_model("flowcnrdb_tiny", merge_depth=None, append_mask=False)
    assert model.config.merge_depth == 3 and model.config.append_mask is False
    assert create_model("flowcnrdb_nomask", train_size=64).config.append_mask is False


def test_bad_override_is_one_clear_error():
    with pytest.raises(HarnessError, match="flowcnrdb_tiny"):
        create_model("flowcnrdb_tiny", no_such_field=1)


def test_models_command_lists_every_model():
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in EXPECTED:
        assert name in result.output
    assert "18.651" in result.output and "7.701" in result.output
