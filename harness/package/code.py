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

import io
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from jinja2 import Environment, FileSystemLoader, StrictUndefined

import harness
from harness.challenge import IMAGE_HEIGHT, IMAGE_WIDTH, NUM_FRAMES
from harness.data import Split, discover_scenes, select_scenes
from harness.errors import HarnessError
from harness.io import sha256_file
from harness.package.zips import safe_extract, write_zip
from harness.registry import ModelEntry, model_config, model_entry

TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent), undefined=StrictUndefined, keep_trailing_newline=True)
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
    path: Path
    team_id: str
    team_name: str
    model: str
    name: str
    weights: str
    factsheet: dict[str, Any]

    @property
    def stem(self) -> str:
        return f"{self.team_id}_{self.name}"

    @property
    def entry(self) -> ModelEntry:
        return model_entry(self.model)

    def weights_path(self) -> Path:
        entry = self.entry
        if self.weights == "bundled":
            if entry.weights is None or not entry.weights.path.is_file():
                raise HarnessError(f"{self.path}: model {self.model!r} has no bundled weights")
            return entry.weights.path
        path = Path(self.weights)
        path = path if path.is_absolute() else self.path.parent / path
        if not path.is_file():
            raise HarnessError(f"{self.path}: weights {self.weights!r} not found (looked at {path})")
        return path


def read_manifest(path: Path) -> Manifest:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise HarnessError(f"{path}: unreadable manifest ({exc})") from None
    try:
        team, model = doc["team"], doc["model"]
        manifest = Manifest(path, str(team["id"]), str(team["name"]), str(model["registered"]), str(model["name"]),
                            str(model.get("weights", "bundled")), dict(doc.get("factsheet", {})))
    except KeyError as exc:
        raise HarnessError(f"{path}: missing field {exc}") from None
    if not (len(manifest.team_id) == 2 and manifest.team_id.isdigit()):
        raise HarnessError(f"{path}: team id must be two digits, got {manifest.team_id!r}")
    if manifest.entry.model_class is None or manifest.entry.config_class is None:
        raise HarnessError(f"{path}: model {manifest.model!r} has no code-submission layout")
    return manifest


def config_table_tex(config: Any, caption: str) -> str:
    """The factsheet's configuration table (LaTeX, escaped by pandas)."""
    values = {k: ", ".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v) for k, v in asdict(config).items()}
    table = pd.DataFrame({"field": list(values), "value": list(values.values())})
    return table.to_latex(index=False, escape=True, caption=caption, position="t")


def code_files(manifest: Manifest) -> dict[str, Path | bytes]:
    entry = manifest.entry
    assert entry.model_class is not None and entry.config_class is not None and entry.source_file is not None
    model = harness.create_model(manifest.model)
    weights = manifest.weights_path()
    harness.load_checkpoint(model, weights)
    buf = io.BytesIO()
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, buf)
    flops_size = f"{IMAGE_HEIGHT}x{IMAGE_WIDTH}"
    demo = TEMPLATES.get_template("test_demo.py.j2").render(
        model_file=f"Model_{manifest.stem}.py", ckpt_file=f"Ckpt_{manifest.stem}.pth", model_class=entry.model_class.__name__,
        config_class=entry.config_class.__name__, config=repr(model_config(model)), flops_size=flops_size,
    )
    readme = TEMPLATES.get_template("code_readme.md.j2").render(
        team_id=manifest.team_id, team_name=manifest.team_name, name=manifest.name, model=manifest.model,
        parameters=sum(p.numel() for p in model.parameters()), weights_sha256=sha256_file(weights),
        frames=NUM_FRAMES, flops_size=flops_size, factsheet=manifest.factsheet,
    )
    caption = f"{manifest.name} configuration (team {manifest.team_id})".replace("_", r"\_")
    return {
        f"models/Model_{manifest.stem}.py": entry.source_file,
        f"model_zoo/Ckpt_{manifest.stem}.pth": buf.getvalue(),
        "test_demo.py": demo.encode(),
        "factsheet/config_table.tex": config_table_tex(model.config, caption).encode(),
        "README.md": readme.encode(),
    }


def package_code(manifest_path: Path, out: Path) -> Path:
    return write_zip(code_files(read_manifest(manifest_path)), out)


def run_demo(zip_path: Path, inputs: Path, outputs: Path, flops_size: str = "64x128") -> subprocess.CompletedProcess[str]:
    """Extract the code zip and run its test_demo.py where harness cannot be imported."""
    work = Path(tempfile.mkdtemp(prefix="harness-code-"))
    try:
        safe_extract(zip_path, work, allowed_suffixes=None)
        cmd = [sys.executable, "-I", "-c", BLOCK_HARNESS, str(work / "test_demo.py"), "--input", str(inputs),
               "--output", str(outputs), "--flops-size", flops_size]
        return subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=3600)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def verify_code(zip_path: Path, manifest_path: Path, data: Path | None = None) -> dict[str, Any]:
    """Run the zip's demo on the validation scenes and compare with `harness evaluate`, byte for byte."""
    from harness.data.embedded import embedded_dataset
    from harness.evaluate import EvalConfig, evaluate

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
        evaluate(EvalConfig(model=manifest.model, weights=manifest.weights_path(), data=data, split=Split.val, out=run))
        differ = [s.output_name for s in scenes
                  if not (demo_out / s.output_name).is_file()
                  or (demo_out / s.output_name).read_bytes() != (run / "res" / s.output_name).read_bytes()]
        if differ:
            raise HarnessError(f"{zip_path}: outputs differ from harness evaluate for {', '.join(differ[:5])}")
        return {"zip": str(zip_path), "scenes": len(scenes), "identical": True, "demo_stdout": proc.stdout}
