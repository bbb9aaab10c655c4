"""The building blocks of every model source: what a source is recorded as, and how outside code is imported.

:mod:`harness.sources` resolves a ``--model`` spelling with these and
:mod:`harness.submission` reads code submissions with them; neither imports
the other's internals.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.archive import safe_extract
from harness.errors import HarnessError, first_line
from harness.foreign import as_if_run_alone, their_code
from harness.io import atomic_folder, sha256_file

Args = list[Any] | dict[str, Any]


@dataclass
class ModelSource:
    """What a model was built from: recorded in ``run.json``, ``summary.json`` and the report."""

    spec: str
    kind: str  # registered | file | module | plugin | submission
    name: str
    args: Args = field(default_factory=dict)
    file: str | None = None
    sha256: str | None = None
    weights: str | None = None  # a submission's own checkpoint
    choices: tuple[str, ...] = ()  # a submission's model_zoo/ files when there are several: --weights picks one

    def as_dict(self) -> dict[str, Any]:
        """What is recorded: everything but ``choices`` (the weights a run used are recorded apart)."""
        return {k: v for k, v in asdict(self).items() if k != "choices"}

    @property
    def needs_trust(self) -> bool:
        return self.kind == "submission"


def call_factory(factory: Any, args: Args, label: str) -> nn.Module:
    try:
        with their_code("construction", label, note_wait=True):
            model = factory(*args) if isinstance(args, list) else factory(**args)
    except TypeError as exc:  # arguments the constructor does not take
        raise HarnessError(f"model {label!r}: {exc}") from None
    except (Exception, SystemExit) as exc:  # raised before reaching their code, or in a library it called
        raise HarnessError(f"model {label!r}: construction failed ({type(exc).__name__}: {first_line(exc)})") from None
    if not isinstance(model, nn.Module):
        raise HarnessError(f"model {label!r}: built a {type(model).__name__}, not a torch.nn.Module")
    return model


SUBMISSIONS_EXTRA = {"einops": "einops", "cv2": "opencv-python-headless"}
"""Modules other teams' code imports, by the distribution the ``[submissions]`` extra installs for each."""
TORCH_BUILT = ("torchvision", "timm")  # compiled against one torch build (timm through torchvision)


def install_hint(module: str | None) -> str:
    """How to install a module somebody else's code imports."""
    top = (module or "").split(".")[0]
    if top in SUBMISSIONS_EXTRA:
        return f"pip install -e '.[submissions]' installs it ({SUBMISSIONS_EXTRA[top]}) with the others teams' code imports"
    if top in TORCH_BUILT:
        return (
            f"it must be built for this torch ({torch.__version__}): install the matching build from the PyTorch "
            "index (a plain pip install takes a CUDA build of torch with it)"
        )
    return f"pip install {top}"


def import_file(path: Path, roots: list[Path]) -> Any:
    """Import a Python file as a module of its own package (its folder), so that its helper modules
    import as siblings (``from .helper import x``) and, with ``roots`` on sys.path, by name."""
    package = f"harness_user_{sha256_file(path)[:16]}"
    name = f"{package}.{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    holder = types.ModuleType(package)
    holder.__path__ = [str(path.parent)]
    sys.modules.setdefault(package, holder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise HarnessError(f"{path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    for root in reversed(roots):
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
    try:
        with their_code("import", path.name, note_wait=True), as_if_run_alone(path):
            try:
                spec.loader.exec_module(module)
            except ModuleNotFoundError as exc:
                raise HarnessError(
                    f"{path}: needs the module {exc.name!r}, which is not installed: {install_hint(exc.name)}"
                ) from None
    except HarnessError:
        del sys.modules[name]
        raise
    return module


def extract_cached(zip_path: Path, cache: Path) -> Path:
    """A zip's contents, extracted safely once into ``cache/<sha256>``."""
    target = cache / sha256_file(zip_path)
    if not target.is_dir():
        with atomic_folder(target) as tmp:
            safe_extract(zip_path, tmp, allowed_suffixes=None)
    return target
