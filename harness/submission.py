"""Challenge code submissions from anyone: read with :mod:`ast`, imported only when trusted.

The layout (starter kit)::

    models/Model_XX_Name.py     the model (and any helper modules beside it)
    model_zoo/<checkpoint>      its weights: the one file there
    test_demo.py                imports the model class from ``models.Model_XX_Name`` and constructs it

``test_demo.py`` is parsed, never run: its ``from models.X import Class [as alias]``
names the file and class, and the first call of that class (or alias) gives
the constructor arguments, which must be literals.
"""

from __future__ import annotations

import ast
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from harness.challenge import MAX_DEMO_BYTES
from harness.data.embedded import cache_root
from harness.errors import HarnessError, first_line
from harness.io import sha256_file
from harness.model_import import Args, ModelSource, call_factory, extract_cached, import_file

DEMO = "test_demo.py"


@dataclass
class Submission:
    root: Path
    model_file: Path
    class_name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoints: list[Path] = field(default_factory=list)  # every file under model_zoo/
    args_problem: str | None = None  # why test_demo.py's arguments cannot be read: --model-args must give them

    @property
    def checkpoint(self) -> Path | None:
        """The submission's own weights: the one file under model_zoo/ (None when there are none, or several)."""
        return self.checkpoints[0] if len(self.checkpoints) == 1 else None


def _root(path: Path) -> Path:
    """The folder holding test_demo.py: ``path`` itself, or its only sub-folder (a zipped folder)."""
    if (path / DEMO).is_file():
        return path
    entries = [p for p in path.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / DEMO).is_file():
        return entries[0]
    raise HarnessError(f"{path}: not a code submission (no {DEMO} at its top)")


def _imported_classes(tree: ast.Module) -> dict[str, tuple[str, str]]:
    """Local name -> (module under models/, class) for every ``from models.X import C [as A]``."""
    found = {}
    for node in ast.walk(tree):
        module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
        if isinstance(node, ast.ImportFrom) and node.level == 0 and module.startswith("models."):
            for alias in node.names:
                found[alias.asname or alias.name] = (module.split(".", 1)[1], alias.name)
    return found


def _constants(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level ``NAME = value`` assignments (values resolved only when they are literals)."""
    return {
        t.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }


def _literal(node: ast.expr, constants: dict[str, ast.expr]) -> Any:
    if isinstance(node, ast.Name) and node.id in constants:
        node = constants[node.id]
    return ast.literal_eval(node)


def _constructor(tree: ast.Module, local: str, demo: Path) -> tuple[list[Any], dict[str, Any], str | None]:
    """The literal arguments of the model's first construction, or why they are not literals."""
    constants = _constants(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == local:
            try:
                args: list[Any] = []
                for a in node.args:
                    args.extend(
                        _literal(a.value, constants) if isinstance(a, ast.Starred) else [_literal(a, constants)]
                    )
                kwargs: dict[str, Any] = {}
                for kw in node.keywords:
                    kwargs.update(
                        _literal(kw.value, constants) if kw.arg is None else {kw.arg: _literal(kw.value, constants)}
                    )
            except (ValueError, TypeError, RecursionError, MemoryError):
                return (
                    [],
                    {},
                    f"{demo}:{node.lineno}: the model's constructor arguments are not literals; pass --model-args",
                )
            return args, kwargs, None
    return [], {}, None


def _checkpoints(root: Path) -> list[Path]:
    zoo = root / "model_zoo"
    return sorted(p for p in zoo.rglob("*") if p.is_file() and not p.name.startswith(".")) if zoo.is_dir() else []


def zoo_choice(checkpoints: list[Path]) -> str:
    """The line that asks for --weights when model_zoo/ holds several files."""
    names = ", ".join(p.name for p in checkpoints[:4]) + (", ..." if len(checkpoints) > 4 else "")
    return f"{checkpoints[0].parent}: {len(checkpoints)} files ({names}); pass --weights to choose one"


def read_submission(path: Path) -> Submission:
    """The model file, class, constructor arguments and checkpoint of a submission folder (nothing imported)."""
    root = _root(path)
    demo = root / DEMO
    if demo.stat().st_size > MAX_DEMO_BYTES:
        raise HarnessError(
            f"{demo}: {demo.stat().st_size:,} bytes; a test_demo.py is parsed only up to {MAX_DEMO_BYTES:,} "
            "(the starter kit's is about 5 KB)"
        )
    try:
        tree = ast.parse(demo.read_text(encoding="utf-8"), str(demo))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as exc:
        raise HarnessError(f"{demo}: unreadable ({first_line(exc)})") from None
    except (RecursionError, MemoryError):
        raise HarnessError(f"{demo}: nested too deeply to be parsed (a test_demo.py constructs a model)") from None
    classes = _imported_classes(tree)
    if not classes:
        raise HarnessError(
            f"{demo}: imports no model class from models/ (expected `from models.Model_XX_Name import Class`)"
        )
    local, (module, class_name) = next(iter(classes.items()))
    model_file = root / "models" / f"{module.replace('.', '/')}.py"
    if not model_file.is_file():
        raise HarnessError(f"{demo}: imports {module} but {model_file} does not exist")
    args, kwargs, problem = _constructor(tree, local, demo)
    return Submission(root, model_file, class_name, args, kwargs, _checkpoints(root), problem)


def submission_folder(path: Path) -> Path:
    """A submission folder, or a zip extracted safely (traversal, links, bombs refused) into the cache."""
    if path.is_dir():
        return path
    if path.is_file() and zipfile.is_zipfile(path):
        return extract_cached(path, cache_root() / "submissions")
    if path.is_file() and tarfile.is_tarfile(path):
        raise HarnessError(f"{path}: a tar archive, not a zip; code submissions are folders or zips")
    raise HarnessError(f"{path}: not a code submission folder or zip")


def from_submission(spec: str, args: Args, trust_code: bool) -> tuple[nn.Module, ModelSource]:
    """Build the model of ``submission:PATH``; its model file is imported only with ``trust_code``."""
    sub = read_submission(submission_folder(Path(spec.split(":", 1)[1]).expanduser()))
    if not trust_code:
        raise HarnessError(
            f"{sub.model_file}: a code submission's model file is somebody else's code; "
            "pass --trust-code to import and run it"
        )
    module = import_file(sub.model_file, [sub.model_file.parent, sub.root])
    if not hasattr(module, sub.class_name):
        raise HarnessError(f"{sub.model_file}: has no class {sub.class_name!r}")
    cls = getattr(module, sub.class_name)
    if args:
        chosen, model = args, call_factory(cls, args, spec)
    elif sub.args_problem is not None:
        raise HarnessError(sub.args_problem)
    else:  # as test_demo.py constructs it
        chosen = (
            sub.kwargs if not sub.args else sub.args if not sub.kwargs else {"args": sub.args, "kwargs": sub.kwargs}
        )
        model = call_factory(lambda: cls(*sub.args, **sub.kwargs), {}, spec)
    source = ModelSource(
        spec,
        "submission",
        sub.class_name,
        chosen,
        str(sub.model_file),
        sha256_file(sub.model_file),
        str(sub.checkpoint) if sub.checkpoint else None,
        tuple(str(p) for p in sub.checkpoints) if len(sub.checkpoints) > 1 else (),
    )
    return model, source
