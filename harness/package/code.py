"""Code submissions: the challenge's layout from a manifest, and its verification.

Layout of the zip (ID the two-digit team id, Name from the manifest)::

    models/Model_[ID]_[Name].py      the self-contained model file (torch only), as in models/
    model_zoo/Ckpt_[ID]_[Name].pth   a plain state dict
    test_demo.py                     runs the model over an input folder, prints params and fvcore FLOPs
    factsheet/config_table.tex       the factsheet's configuration table, from the model config
    README.md

Verification extracts the zip into a temporary folder and runs its
``test_demo.py`` in a fresh interpreter in which ``harness`` cannot be
imported, then compares its outputs byte for byte with ``harness evaluate``.
"""

from __future__ import annotations

import dataclasses
import io
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from torch import nn

from harness.challenge import IMAGE_HEIGHT, IMAGE_WIDTH, NUM_FRAMES
from harness.checkpoint import load_checkpoint
from harness.data import discover_scenes, select_scenes
from harness.errors import HarnessError
from harness.io import sha256_file
from harness.options import Split
from harness.package.zips import safe_extract, write_zip
from harness.registry import model_config, model_entry
from harness.sources import Args, resolve_model

NAME_RE = re.compile(r"[A-Za-z0-9_]+")
"""Names that go into file names in the zip (Model_ID_Name.py): nothing that could leave its folder."""
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent), undefined=StrictUndefined, keep_trailing_newline=True
)
BLOCK_HARNESS = """
import runpy, sys
class _NoHarness:
    def find_spec(self, name, path=None, target=None):
        if name == "harness" or name.startswith("harness."):
            raise ImportError(name + " is not available to a code submission")
        return None
sys.meta_path.insert(0, _NoHarness())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@dataclass
class Manifest:
    """``submissions/*.toml``: the team, the model (a registered name, or a file, class and arguments) and weights."""

    path: Path
    team_id: str
    team_name: str
    name: str
    weights: str
    factsheet: dict[str, Any]
    registered: str | None = None
    file: Path | None = None
    class_name: str | None = None
    args: Args = field(default_factory=dict)
    helpers: list[Path] = field(default_factory=list)

    @property
    def stem(self) -> str:
        return f"{self.team_id}_{self.name}"

    @property
    def spec(self) -> str:
        """The model source (harness.sources) this manifest names."""
        return self.registered or f"{self.file}:{self.class_name}"

    def weights_path(self) -> Path:
        if self.weights == "bundled":
            entry = model_entry(self.registered) if self.registered else None
            if entry is None or entry.weights is None or not entry.weights.path.is_file():
                raise HarnessError(f"{self.path}: model {self.spec!r} has no bundled weights")
            return entry.weights.path
        path = self._relative(self.weights)
        if not path.is_file():
            raise HarnessError(f"{self.path}: weights {self.weights!r} not found (looked at {path})")
        return path

    def _relative(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else self.path.parent / path


def _model_fields(path: Path, model: dict[str, Any]) -> dict[str, Any]:
    if "registered" in model:
        entry = model_entry(str(model["registered"]))
        if entry.model_class is None or entry.config_class is None:
            raise HarnessError(f"{path}: model {entry.name!r} has no code-submission layout")
        return {"registered": entry.name, "args": dict(model.get("args", {}))}
    if "file" not in model or "class" not in model:
        raise HarnessError(f"{path}: [model] needs `registered = NAME`, or `file = PATH` and `class = NAME`")
    args = model.get("args", {})
    if not isinstance(args, (dict, list)):
        raise HarnessError(f"{path}: [model] args must be a table (keywords) or an array (positional)")
    rel = lambda name: Path(name) if Path(name).is_absolute() else path.parent / name
    return {
        "file": rel(str(model["file"])),
        "class_name": str(model["class"]),
        "args": args,
        "helpers": [rel(str(h)) for h in model.get("helpers", [])],
    }


def read_manifest(path: Path) -> Manifest:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise HarnessError(f"{path}: unreadable manifest ({exc})") from None
    team, model = doc.get("team"), doc.get("model")
    if not isinstance(team, dict) or not isinstance(model, dict):
        raise HarnessError(f"{path}: needs the tables [team] (id, name) and [model] (name, ...)")
    try:
        manifest = Manifest(
            path,
            str(team["id"]),
            str(team["name"]),
            str(model["name"]),
            str(model.get("weights", "bundled")),
            dict(doc.get("factsheet", {})),
            **_model_fields(path, model),
        )
    except KeyError as exc:
        raise HarnessError(f"{path}: missing field {exc}") from None
    except (TypeError, ValueError) as exc:
        raise HarnessError(f"{path}: malformed field ({exc})") from None
    if not (len(manifest.team_id) == 2 and manifest.team_id.isdigit()):
        raise HarnessError(f"{path}: team id must be two digits, got {manifest.team_id!r}")
    for field_name, value in (("team name", manifest.team_name), ("model name", manifest.name)):
        if not NAME_RE.fullmatch(value):
            raise HarnessError(
                f"{path}: {field_name} must be letters, digits and underscores ([A-Za-z0-9_]+), got {value!r}"
            )
    return manifest


def config_table_tex(config: Any, caption: str) -> str:
    """The factsheet's configuration table (LaTeX, escaped by pandas)."""
    values = {k: ", ".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v) for k, v in asdict(config).items()}
    table = pd.DataFrame({"field": list(values), "value": list(values.values())})
    return table.to_latex(index=False, escape=True, caption=caption, position="t")


def _build(manifest: Manifest) -> tuple[nn.Module, Path, dict[str, Any]]:
    """The model with its weights, its source file and how test_demo.py constructs it (``Class(*ARGS, **KWARGS)``)."""
    model, source = resolve_model(manifest.spec, manifest.args)
    load_checkpoint(model, manifest.weights_path())
    if manifest.registered:
        entry = model_entry(manifest.registered)
        assert entry.model_class is not None and entry.source_file is not None
        return (
            model,
            entry.source_file,
            {"model_class": entry.model_class.__name__, "args": [], "kwargs": model_config(model)},
        )
    args = manifest.args
    assert source.file is not None and manifest.class_name is not None
    construct = {
        "model_class": manifest.class_name,
        "args": args if isinstance(args, list) else [],
        "kwargs": args if isinstance(args, dict) else {},
    }
    return model, Path(source.file), construct


def code_files(manifest: Manifest) -> dict[str, Path | bytes]:
    model, source_file, construct = _build(manifest)
    weights = manifest.weights_path()
    buf = io.BytesIO()
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, buf)
    flops_size = f"{IMAGE_HEIGHT}x{IMAGE_WIDTH}"
    demo = TEMPLATES.get_template("test_demo.py.j2").render(
        model_module=f"Model_{manifest.stem}",
        ckpt_file=f"Ckpt_{manifest.stem}.pth",
        flops_size=flops_size,
        model_class=construct["model_class"],
        args=repr(construct["args"]),
        kwargs=repr(construct["kwargs"]),
    )
    readme = TEMPLATES.get_template("code_readme.md.j2").render(
        team_id=manifest.team_id,
        team_name=manifest.team_name,
        name=manifest.name,
        model=manifest.spec,
        parameters=sum(p.numel() for p in model.parameters()),
        weights_sha256=sha256_file(weights),
        frames=NUM_FRAMES,
        flops_size=flops_size,
        factsheet=manifest.factsheet,
    )
    files: dict[str, Path | bytes] = {
        "models/__init__.py": b"",
        f"models/Model_{manifest.stem}.py": source_file,
        f"model_zoo/Ckpt_{manifest.stem}.pth": buf.getvalue(),
        "test_demo.py": demo.encode(),
        "README.md": readme.encode(),
    }
    config = getattr(model, "config", None)
    if config is not None and dataclasses.is_dataclass(config):
        caption = f"{manifest.name} configuration (team {manifest.team_id})".replace("_", r"\_")
        files["factsheet/config_table.tex"] = config_table_tex(config, caption).encode()
    for helper in manifest.helpers:
        if not helper.is_file():
            raise HarnessError(f"{manifest.path}: helper {helper} not found")
        files[f"models/{helper.name}"] = helper
    return files


def package_code(manifest_path: Path, out: Path) -> Path:
    return write_zip(code_files(read_manifest(manifest_path)), out)


def run_demo(
    zip_path: Path, inputs: Path, outputs: Path, flops_size: str = "64x128"
) -> subprocess.CompletedProcess[str]:
    """Extract the code zip and run its test_demo.py where harness cannot be imported."""
    work = Path(tempfile.mkdtemp(prefix="harness-code-"))
    try:
        safe_extract(zip_path, work, allowed_suffixes=None)
        cmd = [
            sys.executable,
            "-I",
            "-c",
            BLOCK_HARNESS,
            str(work / "test_demo.py"),
            "--input",
            str(inputs),
            "--output",
            str(outputs),
            "--flops-size",
            flops_size,
        ]
        return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=3600)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def verify_code(zip_path: Path, manifest_path: Path, data: Path | None = None) -> dict[str, Any]:
    """Run the zip's demo on the validation scenes and compare with `harness evaluate --backend eager`, byte for byte
    (the demo runs the model file as written, as the eager backend does)."""
    from harness.data.embedded import embedded_dataset
    from harness.evaluate import evaluate
    from harness.options import EvalConfig

    manifest = read_manifest(manifest_path)
    data = data or embedded_dataset()
    scenes = select_scenes(discover_scenes(data), Split.val)
    with tempfile.TemporaryDirectory(prefix="harness-verify-code-") as tmp:
        inputs, demo_out = Path(tmp) / "inputs", Path(tmp) / "demo"
        inputs.mkdir()
        for scene in scenes:
            for frame in scene.frame_paths():
                shutil.copy(frame, inputs / frame.name)
        proc = run_demo(zip_path, inputs, demo_out)
        if proc.returncode != 0:
            raise HarnessError(f"{zip_path}: test_demo.py failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
        run = Path(tmp) / "run"
        evaluate(
            EvalConfig(
                model=manifest.spec,
                model_args=manifest.args,
                weights=manifest.weights_path(),
                data=data,
                split=Split.val,
                out=run,
                backend="eager",
            )
        )
        differ = [
            s.output_name
            for s in scenes
            if not (demo_out / s.output_name).is_file()
            or (demo_out / s.output_name).read_bytes() != (run / "res" / s.output_name).read_bytes()
        ]
        if differ:
            raise HarnessError(f"{zip_path}: outputs differ from harness evaluate for {', '.join(differ[:5])}")
        return {"zip": str(zip_path), "scenes": len(scenes), "identical": True, "demo_stdout": proc.stdout}


def verify_submission(path: Path, trust_code: bool, data: Path | None = None) -> dict[str, Any]:
    """Someone else's code submission (folder or zip): its model built as its test_demo.py builds it, its checkpoint
    loaded strictly, and run over the validation scenes with every output checked."""
    from harness.data.embedded import embedded_dataset
    from harness.evaluate import evaluate
    from harness.options import EvalConfig

    with tempfile.TemporaryDirectory(prefix="harness-verify-submission-") as tmp:
        summary = evaluate(
            EvalConfig(
                model=f"submission:{path}",
                trust_code=trust_code,
                data=data or embedded_dataset(),
                split=Split.val,
                out=Path(tmp) / "run",
            )
        )
    return {
        "submission": str(path),
        "scenes": summary.num_scenes,
        "parameters": summary.parameters,
        "psnr": summary.psnr,
        "source": summary.source,
    }
