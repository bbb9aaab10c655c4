"""Any model: a file, a module, an installed plugin, a code submission (folder or zip), through every command."""

from __future__ import annotations

import json
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from clihelp import one_error
from typer.testing import CliRunner

from harness import create_model
from harness.cli import app
from harness.evaluate import build_model
from harness.io import sha256_file
from harness.options import EvalConfig

runner = CliRunner()

HELPER = '''
import torch


def spectral_mix(y):
    """Keep half of every frequency: an rfft2/irfft2 branch."""
    return torch.fft.irfft2(torch.fft.rfft2(y) * 0.5, s=y.shape[-2:])
'''

TOY = '''
import torch
import torch.nn.functional as F
from torch import nn

from {helper_import} import spectral_mix


class Toy(nn.Module):
    """A few convolutions, an FFT branch, attention over a pooled map, bilinear resampling, GroupNorm."""

    def __init__(self, width=8, out_channels=3):
        super().__init__()
        self.inp = nn.Conv2d(9, width, 3, padding=1)
        self.norm = nn.GroupNorm(2, width)
        self.qkv = nn.Conv2d(width, width, 1)
        self.out = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, x):
        y = F.silu(self.norm(self.inp(x)))
        y = y + spectral_mix(y)
        small = F.interpolate(y, scale_factor=0.25, mode="bilinear", align_corners=False)
        b, c, h, w = small.shape
        t = self.qkv(small).flatten(2).transpose(1, 2)
        a = F.scaled_dot_product_attention(t, t, t).transpose(1, 2).reshape(b, c, h, w)
        y = y + F.interpolate(a, size=y.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(y) + 0.25


def build(width=8):
    return Toy(width)
'''


def write_toy(folder: Path, helper_import: str = "toy_helper", name: str = "toy.py", marker: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{helper_import.rsplit('.', 1)[-1]}.py").write_text(HELPER)
    text = TOY.format(helper_import=helper_import)
    if marker:  # proves whether the file's top-level code ran
        text = "from pathlib import Path\nPath(__file__).with_name('IMPORTED').touch()\n" + text
    (folder / name).write_text(text)
    return folder / name


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _one_error(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    return errors[0]


@pytest.fixture
def toy_file(tmp_path) -> Path:
    return write_toy(tmp_path / "src")


def test_file_source_through_evaluate_report_budget_and_train(tmp_path, toy_file, small_data):
    spec = f"{toy_file}:Toy"
    code, out = _run(
        "evaluate",
        "--model",
        spec,
        "--model-args",
        '{"width": 4}',
        "--data",
        str(small_data),
        "--out",
        str(tmp_path / "run"),
    )
    assert code == 0, out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["source"]["kind"] == "file" and summary["source"]["name"] == "Toy"
    assert summary["source"]["sha256"] == sha256_file(toy_file) and summary["source"]["args"] == {"width": 4}
    assert json.loads((tmp_path / "run" / "run.json").read_text())["source"] == summary["source"]
    assert sha256_file(toy_file) in (tmp_path / "run" / "report.html").read_text()
    code, doc = _budget_json("--model", spec, "--size", "64x128", "--counters", "fvcore,flop_counter_mode,analytic")
    assert code == 0, doc
    assert doc["source"]["kind"] == "file" and doc["params"] == sum(p.numel() for p in create_model(spec).parameters())
    code, out = _run(
        "train",
        "--model",
        spec,
        "--data",
        str(small_data),
        "--out",
        str(tmp_path / "train"),
        "--iters",
        "2",
        "--crop",
        "32",
        "--batch",
        "2",
        "--val-every",
        "2",
        "--log-every",
        "1",
        "--val-crop",
        "64",
        "--workers",
        "0",
    )
    assert code == 0, out
    assert json.loads((tmp_path / "train" / "config.json").read_text())["source"]["kind"] == "file"
    assert (tmp_path / "train" / "last.pth").is_file()
    code, out = _run("package", "results", str(tmp_path / "run"), "--out", str(tmp_path / "results.zip"))
    assert code == 0 and len(zipfile.ZipFile(tmp_path / "results.zip").namelist()) == 3, out


def test_a_model_without_weights_is_built_the_same_in_every_run(tmp_path, toy_file, small_data):
    for run in ("a", "b"):
        torch.manual_seed(17 if run == "a" else 99)  # whatever the caller's random state
        code, out = _run(
            "evaluate", "--model", f"{toy_file}:Toy", "--data", str(small_data), "--out", str(tmp_path / run)
        )
        assert code == 0, out
    a, b = sorted((tmp_path / "a" / "res").iterdir()), sorted((tmp_path / "b" / "res").iterdir())
    assert [p.name for p in a] == [p.name for p in b] and all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    state = torch.get_rng_state()
    build_model(EvalConfig(f"{toy_file}:Toy", data=small_data), small_data)
    assert torch.equal(torch.get_rng_state(), state)  # building leaves the caller's random state as it was


def test_positional_arguments_and_a_changed_file_refuses_reuse(tmp_path, toy_file, small_data):
    model = create_model(f"{toy_file}:Toy", 6, 3)
    assert model.inp.out_channels == 6
    run = str(tmp_path / "run")
    assert (
        _run("evaluate", "--model", f"{toy_file}:Toy", "--model-args", "[6]", "--data", str(small_data), "--out", run)[
            0
        ]
        == 0
    )
    toy_file.write_text(toy_file.read_text() + "\n# edited\n")
    code, out = _run(
        "evaluate", "--model", f"{toy_file}:Toy", "--model-args", "[6]", "--data", str(small_data), "--out", run
    )
    assert code == 2 and "source" in _one_error(out)


def test_module_source(tmp_path, monkeypatch):
    package = tmp_path / "lib" / "toypkg"
    write_toy(package, helper_import="toypkg.toy_helper", name="nets.py")
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    model = create_model("toypkg.nets:build", width=4)
    assert type(model).__name__ == "Toy" and model(torch.rand(1, 9, 32, 32)).shape == (1, 3, 32, 32)


def test_installed_plugin_by_entry_point(tmp_path, monkeypatch, small_data):
    site = tmp_path / "site"
    write_toy(site, helper_import="toy_helper", name="toy_plugin_mod.py")
    info = site / "toy_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[harness.models]\ntoy_plugin = toy_plugin_mod:build\n")
    monkeypatch.syspath_prepend(str(site))
    listing = runner.invoke(app, ["models"], env={"COLUMNS": "250"})
    assert (
        listing.exit_code == 0 and "toy_plugin" in listing.output and "plugin: toy_plugin_mod:build" in listing.output
    )
    assert type(create_model("toy_plugin", width=4)).__name__ == "Toy"
    code, out = _run("evaluate", "--model", "toy_plugin", "--data", str(small_data), "--out", str(tmp_path / "run"))
    assert code == 0, out
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["source"]["kind"] == "plugin"
    _budget_train_package("toy_plugin", tmp_path, small_data)


def _budget_train_package(spec: str, tmp_path: Path, small_data: Path, *extra: str) -> None:
    """budget, train (2 iterations) and a results zip of the run in tmp_path/run, for one model source."""
    code, doc = _budget_json("--model", spec, *extra, "--size", "64x128", "--counters", "analytic")
    assert code == 0 and doc["counters"]["analytic"]["uncounted_ops"] == [], doc
    code, out = _run(
        "train",
        "--model",
        spec,
        *extra,
        "--data",
        str(small_data),
        "--out",
        str(tmp_path / "train"),
        "--iters",
        "2",
        "--crop",
        "32",
        "--batch",
        "2",
        "--val-every",
        "2",
        "--log-every",
        "1",
        "--val-crop",
        "64",
        "--workers",
        "0",
    )
    assert code == 0 and (tmp_path / "train" / "last.pth").is_file(), out
    code, out = _run("package", "results", str(tmp_path / "run"), "--out", str(tmp_path / "results.zip"))
    assert code == 0, out
    assert zipfile.ZipFile(tmp_path / "results.zip").namelist() == [
        "Scene-280-out.tif",
        "Scene-281-out.tif",
        "Scene-282-out.tif",
    ]


def make_submission(root: Path, weights_from: torch.nn.Module) -> Path:
    """The challenge layout, as another team would ship it: helper module, DataParallel checkpoint in `params`."""
    write_toy(root / "models", helper_import="models.toy_helper", name="Model_09_Toy.py", marker=True)
    (root / "models" / "__init__.py").write_text("")
    with open(root / "models" / "toy_helper.py", "a") as fh:  # a third-party import, as real teams' code has
        fh.write(
            "\nfrom einops import rearrange\n\n\ndef tokens(t):\n    return rearrange(t, 'b c h w -> b (h w) c')\n"
        )
    (root / "model_zoo").mkdir()
    wrapped = {"params": {f"module.{k}": v for k, v in weights_from.state_dict().items()}}
    torch.save(wrapped, root / "model_zoo" / "Ckpt_09_Toy.pth")
    (root / "test_demo.py").write_text(
        textwrap.dedent("""
        import torch
        from models.Model_09_Toy import Toy as My_model

        def test():
            model = My_model(width=6).eval()
            model.load_state_dict(torch.load("./model_zoo/Ckpt_09_Toy.pth")["params"])
            raise SystemExit("test_demo.py must never be run by the harness")

        if __name__ == "__main__":
            test()
    """)
    )
    return root


@pytest.fixture
def trained_toy(toy_file) -> torch.nn.Module:
    torch.manual_seed(3)
    model = create_model(f"{toy_file}:Toy", width=6)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return model


def test_submission_refused_without_trust_and_nothing_imported(tmp_path, trained_toy, small_data):
    sub = make_submission(tmp_path / "sub", trained_toy)
    code, out = _run(
        "evaluate", "--model", f"submission:{sub}", "--data", str(small_data), "--out", str(tmp_path / "run")
    )
    assert code == 2 and "Model_09_Toy.py" in _one_error(out) and "--trust-code" in out
    assert not (sub / "models" / "IMPORTED").exists() and not (tmp_path / "run").exists()
    code, out = _run("budget", "--model", f"submission:{sub}", "--size", "64x128", "--counters", "analytic")
    assert code == 2 and not (sub / "models" / "IMPORTED").exists()


def test_submission_folder_and_zip_evaluate_with_their_own_checkpoint(tmp_path, toy_file, trained_toy, small_data):
    sub = make_submission(tmp_path / "sub", trained_toy)
    plain = tmp_path / "plain.pth"
    torch.save(trained_toy.state_dict(), plain)
    assert (
        _run(
            "evaluate",
            "--model",
            f"{toy_file}:Toy",
            "--model-args",
            '{"width": 6}',
            "--weights",
            str(plain),
            "--data",
            str(small_data),
            "--out",
            str(tmp_path / "ref"),
        )[0]
        == 0
    )
    zipped = tmp_path / "sub.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for path in sorted(sub.rglob("*")):
            if path.is_file():
                zf.write(path, f"Team09/{path.relative_to(sub)}")
    for label, path in (("folder", sub), ("zip", zipped)):
        code, out = _run(
            "evaluate",
            "--model",
            f"submission:{path}",
            "--trust-code",
            "--data",
            str(small_data),
            "--out",
            str(tmp_path / label),
        )
        assert code == 0, out
        summary = json.loads((tmp_path / label / "summary.json").read_text())
        assert summary["source"]["kind"] == "submission" and summary["source"]["args"] == {"width": 6}
        assert summary["weights"].endswith("Ckpt_09_Toy.pth")
        for scene in ("Scene-280", "Scene-282"):
            name = f"res/{scene}-out.tif"
            assert (tmp_path / label / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    code, out = _run("package", "code", str(zipped), "--trust-code", "--data", str(small_data), "--verify")
    assert code == 2 and "never run here" in _one_error(out) and "without --verify" in out
    code, out = _run("package", "code", str(zipped), "--trust-code", "--data", str(small_data))  # the advice
    assert code == 0 and "verified: Toy" in out, out
    (tmp_path / "zip").rename(tmp_path / "run")
    _budget_train_package(f"submission:{zipped}", tmp_path, small_data, "--trust-code")


def test_code_submission_of_a_file_model_runs_without_harness(tmp_path, toy_file, trained_toy, small_data):
    from harness.package.code import package_code, verify_code

    torch.save(trained_toy.state_dict(), tmp_path / "toy.pth")
    manifest = tmp_path / "toy.toml"
    manifest.write_text(
        f'[team]\nid = "09"\nname = "Toys"\n[model]\nname = "Toy"\nfile = "{toy_file}"\nclass = "Toy"\n'
        f'args = {{width = 6}}\nhelpers = ["{toy_file.with_name("toy_helper.py")}"]\nweights = "toy.pth"\n'
    )
    zip_path = package_code(manifest, tmp_path / "code.zip")
    with zipfile.ZipFile(zip_path) as zf:
        assert {"models/Model_09_Toy.py", "models/toy_helper.py", "model_zoo/Ckpt_09_Toy.pth", "test_demo.py"} <= set(
            zf.namelist()
        )
    result = verify_code(zip_path, manifest, small_data)
    assert result["identical"] and result["scenes"] == 3


def test_a_model_with_the_wrong_output_is_refused_before_anything_is_written(tmp_path, toy_file, small_data):
    code, out = _run(
        "evaluate",
        "--model",
        f"{toy_file}:Toy",
        "--model-args",
        '{"out_channels": 1}',
        "--data",
        str(small_data),
        "--out",
        str(tmp_path / "run"),
    )
    assert code == 2 and "expected (1, 3, 64, 128)" in _one_error(out)
    assert not list((tmp_path / "run" / "res").glob("*.tif"))


def test_a_missing_third_party_module_is_one_line_naming_it(tmp_path, small_data):
    bad = tmp_path / "needs.py"
    bad.write_text("import einops_but_not_installed\n\nclass Net:\n    pass\n")
    code, out = _run("evaluate", "--model", f"{bad}:Net", "--data", str(small_data), "--out", str(tmp_path / "run"))
    assert code == 2 and "einops_but_not_installed" in _one_error(out) and "pip install" in out


def test_unknown_sources_say_what_is_accepted(tmp_path):
    code, out = _run("budget", "--model", "nope", "--counters", "analytic")
    assert code == 2 and "FILE.py:NAME" in _one_error(out)
    code, out = _run("budget", "--model", f"{tmp_path}/none.py:X", "--counters", "analytic")
    assert code == 2 and "no such file" in _one_error(out)
    code, out = _run("budget", "--model", "demosaic", "--model-args", "{bad", "--counters", "analytic")
    assert code == 2 and "--model-args" in _one_error(out)


def test_tiff_outputs_of_a_file_model_are_rgb_uint8(tmp_path, toy_file, small_data):
    assert (
        _run("evaluate", "--model", f"{toy_file}:Toy", "--data", str(small_data), "--out", str(tmp_path / "run"))[0]
        == 0
    )
    out = tifffile.imread(tmp_path / "run" / "res" / "Scene-281-out.tif")
    assert out.dtype == np.uint8 and out.shape == (64, 128, 3)


def _budget_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["budget", *args, "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}


def test_budget_counts_every_operator_of_the_toy_and_of_every_registered_model(toy_file):
    from harness import list_models

    code, doc = _budget_json("--model", f"{toy_file}:Toy", "--size", "64x128")
    assert code == 0, doc
    assert all("uncounted_ops" in c for c in doc["counters"].values())
    analytic = doc["counters"]["analytic"]
    assert analytic["uncounted_ops"] == [] and doc["verdicts"]["strict"]["pass"] is None  # n/a: limits hold at 768x1536
    assert {"fft", "softmax", "group_norm", "interpolate", "conv", "linear"} <= set(analytic["by_category"])
    assert any(op["op"] == "_fft_r2c" for op in doc["counters"]["fvcore"]["uncounted_ops"])  # fvcore skips FFTs
    assert "aten::fft_rfft2" in doc["counters"]["fvcore"]["unsupported_ops"]
    for name in list_models():
        code, doc = _budget_json("--model", name, "--size", "64x128", "--counters", "analytic")
        assert code == 0 and doc["counters"]["analytic"]["uncounted_ops"] == [], name


def test_an_operator_without_a_formula_is_named_and_the_strict_verdict_undecided(tmp_path):
    path = tmp_path / "sorter.py"
    path.write_text(
        "import torch\nfrom torch import nn\n\nclass Sorter(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.conv = nn.Conv2d(9, 3, 1)\n\n    def forward(self, x):\n"
        "        return torch.sort(self.conv(x), dim=1).values\n"
    )
    code, doc = _budget_json("--model", f"{path}:Sorter", "--counters", "flop_counter_mode,analytic")
    assert code == 3  # undecidable: neither a pass nor a fail
    assert [op["op"] for op in doc["counters"]["analytic"]["uncounted_ops"]] == ["sort"]
    assert doc["counters"]["analytic"]["uncounted_ops"][0] == {"op": "sort", "calls": 1, "elements": 3 * 768 * 1536}
    assert doc["verdicts"]["strict"]["pass"] is None and "sort" in doc["verdicts"]["strict"]["undecided"]
    result = runner.invoke(
        app, ["budget", "--model", f"{path}:Sorter", "--counters", "analytic"], env={"COLUMNS": "250"}
    )
    assert (
        "uncounted by the analytic counter" in result.output
        and "sort (1 calls" in result.output
        and "UNDECIDED" in result.output
    )


def test_a_counter_that_cannot_trace_a_model_fails_alone(tmp_path):
    path = tmp_path / "untraceable.py"
    path.write_text(
        "import torch\nfrom torch import nn\n\nclass Net(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.conv = nn.Conv2d(9, 3, 3, padding=1)\n\n    def forward(self, x):\n"
        "        if torch.jit.is_tracing():\n            raise RuntimeError('this model cannot be traced')\n"
        "        return self.conv(x)\n"
    )
    code, doc = _budget_json("--model", f"{path}:Net", "--counters", "fvcore,flop_counter_mode,analytic")
    assert doc["counters"]["fvcore"]["failed"].startswith("RuntimeError: this model cannot be traced")
    assert (
        doc["counters"]["analytic"]["macs"] == doc["counters"]["flop_counter_mode"]["macs"] + 3 * 768 * 1536
    )  # + bias
    assert doc["verdicts"]["official"] is None and code == 3  # a counter failed: undecidable, never exit 1


def test_a_model_that_opens_autocast_on_its_inputs_device_is_counted_by_every_counter(tmp_path):
    """As the published FlowCNRDB's LayerNorm does: the counters that run without a real forward see a CPU."""
    path = tmp_path / "amp_norm.py"
    path.write_text(
        "import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.conv = nn.Conv2d(9, 3, 3, padding=1)\n        self.norm = nn.LayerNorm(3)\n\n"
        "    def forward(self, x):\n        y = self.conv(x)\n"
        "        with torch.autocast(device_type=y.device.type, enabled=False):\n"
        "            return self.norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)\n"
    )
    code, doc = _budget_json("--model", f"{path}:Net")
    assert code == 0, doc
    assert not [name for name, row in doc["counters"].items() if "failed" in row]
    assert doc["verdicts"]["official"]["pass"] is True and doc["verdicts"]["strict"]["pass"] is True
    conv = 3 * 9 * 9 * 768 * 1536
    assert doc["counters"]["fvcore"]["macs"] >= conv and doc["counters"]["analytic"]["macs"] > conv


def test_a_file_without_a_name_says_which_classes_it_defines_and_the_advice_works(tmp_path):
    net = tmp_path / "burstnet.py"
    net.write_text(
        "from torch import nn\n\n\nclass BurstNet(nn.Sequential):\n    def __init__(self):\n"
        "        super().__init__(nn.Conv2d(9, 3, 3, padding=1))\n"
    )
    line = one_error(runner.invoke(app, ["budget", "--model", str(net), "--size", "64x128"]).output)
    assert "it defines BurstNet" in line and f"--model {net}:BurstNet" in line
    advised = line.split("(e.g. --model ", 1)[1].rstrip(")")
    code, doc = _budget_json("--model", advised, "--size", "64x128", "--counters", "analytic")
    assert code == 0 and doc["params"] == 9 * 3 * 9 + 3


def test_a_submission_without_its_prefix_and_a_misspelt_name_get_what_was_meant(tmp_path):
    made = runner.invoke(app, ["package", "code", "submissions/flowcnrdb_tiny.toml", "--out", str(tmp_path / "c.zip")])
    assert made.exit_code == 0, made.output
    line = one_error(runner.invoke(app, ["budget", "--model", str(tmp_path / "c.zip")]).output)
    assert f"did you mean --model submission:{tmp_path / 'c.zip'} (with --trust-code)?" in line
    code, doc = _budget_json(
        "--model", f"submission:{tmp_path / 'c.zip'}", "--trust-code", "--size", "64x128", "--counters", "analytic"
    )
    assert code == 0 and doc["source"]["kind"] == "submission"
    line = one_error(runner.invoke(app, ["budget", "--model", "flowcnrdb_tiyn"]).output)
    assert line.startswith("error: unknown model 'flowcnrdb_tiyn'; did you mean 'flowcnrdb_tiny'")
    code, _ = _budget_json("--model", "flowcnrdb_tiny", "--size", "64x128", "--counters", "analytic")
    assert code == 0


def test_a_demo_with_computed_arguments_takes_model_args_as_advised(tmp_path, trained_toy, small_data):
    sub = make_submission(tmp_path / "sub", trained_toy)
    demo = sub / "test_demo.py"
    demo.write_text(demo.read_text().replace("My_model(width=6)", "My_model(width=int('6'))"))
    evaluate = ("evaluate", "--model", f"submission:{sub}", "--trust-code", "--data", str(small_data))
    line = _one_error(_run(*evaluate, "--out", str(tmp_path / "refused"))[1])
    assert "test_demo.py:" in line and "not literals; pass --model-args" in line
    code, out = _run(*evaluate, "--model-args", '{"width": 6}', "--out", str(tmp_path / "run"))
    assert code == 0, out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["source"]["args"] == {"width": 6} and summary["weights"].endswith("Ckpt_09_Toy.pth")


def test_a_model_zoo_of_two_checkpoints_takes_weights_as_advised(tmp_path, trained_toy, small_data):
    sub = make_submission(tmp_path / "sub", trained_toy)
    spare = sub / "model_zoo" / "Ckpt_09_Toy_old.pth"
    torch.save({k: torch.zeros_like(v) for k, v in trained_toy.state_dict().items()}, spare)
    evaluate = ("evaluate", "--model", f"submission:{sub}", "--trust-code", "--data", str(small_data))
    line = _one_error(_run(*evaluate, "--out", str(tmp_path / "refused"))[1])
    assert "model_zoo: 2 files (Ckpt_09_Toy.pth, Ckpt_09_Toy_old.pth); pass --weights" in line
    assert not (tmp_path / "refused").exists()
    chosen = sub / "model_zoo" / "Ckpt_09_Toy.pth"
    code, out = _run(*evaluate, "--weights", str(chosen), "--out", str(tmp_path / "run"))
    assert code == 0, out
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["weights"] == str(chosen)
    code, out = _run(
        "budget", "--model", f"submission:{sub}", "--trust-code", "--size", "64x128", "--counters", "analytic"
    )
    assert code == 0, out  # counting needs no weights: the choice is not asked for


def test_a_module_in_the_current_folder_imports_without_pythonpath(tmp_path, monkeypatch):
    package = tmp_path / "work" / "herepkg"
    write_toy(package, helper_import="herepkg.toy_helper", name="nets.py")
    (package / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path / "work")
    before = list(sys.path)
    code, doc = _budget_json("--model", "herepkg.nets:build", "--size", "64x128", "--counters", "analytic")
    assert code == 0 and doc["source"]["kind"] == "module" and doc["params"] > 0
    assert sys.path == before  # the current folder was on the path only during the import
    monkeypatch.chdir(tmp_path)
    line = _one_error(_run("budget", "--model", "nowhere.nets:build", "--size", "64x128")[1])
    assert "cannot import 'nowhere' (neither installed nor in the current folder" in line


def test_a_submissions_report_counts_its_budget_when_trusted(tmp_path, trained_toy, small_data):
    sub = make_submission(tmp_path / "sub", trained_toy)
    run = tmp_path / "run"
    code, out = _run(
        "evaluate", "--model", f"submission:{sub}", "--trust-code", "--data", str(small_data), "--out", str(run)
    )
    assert code == 0, out
    assert "parameters at 768x1536" in (run / "report.html").read_text()  # evaluate was trusted: it counted
    code, out = _run("report", str(run))
    assert code == 0, out
    html = (run / "report.html").read_text()
    advice = "`harness report RUN --trust-code` counts it"
    assert advice in html and "parameters at 768x1536" not in html and "config</td>" not in html
    code, out = _run("report", str(run), "--trust-code")  # the advice
    assert code == 0 and "parameters at 768x1536" in (run / "report.html").read_text(), out


def test_modules_teams_import_come_with_the_submissions_extra(tmp_path, small_data, monkeypatch):
    net = tmp_path / "cv_net.py"
    net.write_text(
        "import cv2\nimport einops\nfrom torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.conv = nn.Conv2d(9, 3, 1)\n\n"
        "    def forward(self, x):\n        return einops.rearrange(self.conv(x), 'b c h w -> b c h w')\n"
    )
    budget = ("--model", f"{net}:Net", "--size", "64x128", "--counters", "analytic")
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "cv2", None)  # as on a machine without the extra
        line = _one_error(_run("budget", *budget)[1])
    assert (
        "needs the module 'cv2'" in line
        and "pip install -e '.[submissions]' installs it (opencv-python-headless)" in line
    )
    code, doc = _budget_json(*budget)  # with the extra installed, as the advice says
    assert code == 0 and doc["params"] == 9 * 3 + 3
    (tmp_path / "tv_net.py").write_text("import torchvision_for_this_test\n")
    monkeypatch.setattr("harness.model_import.TORCH_BUILT", ("torchvision_for_this_test",))
    line = _one_error(_run("budget", "--model", f"{tmp_path / 'tv_net.py'}:Net")[1])
    assert "'torchvision_for_this_test'" in line and "built for this torch" in line
