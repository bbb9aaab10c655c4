"""Where a model comes from: one spelling of ``--model`` for every command and ``create_model``.

A model source is one of

- a registered name (``harness models``);
- ``FILE.py:NAME`` or ``package.module:NAME``: a class or factory in a file or
  an importable module, the way uvicorn and gunicorn name an app;
- an installed plugin: an entry point in the group ``harness.models``
  (name -> a factory returning an ``nn.Module``), used by its name;
- ``submission:PATH``: a challenge code submission (folder or zip) in the
  challenge's layout. Its model class and constructor arguments are read from
  its ``test_demo.py`` with :mod:`ast`, never by running it; its model file is
  somebody else's code, imported only with ``trust_code=True``.

Constructor arguments (``--model-args``) are a JSON object of keyword
arguments (which also override a registered model's configuration) or a JSON
array of positional ones. Every resolution is described by a
:class:`ModelSource`, which runs record.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.metadata
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

from torch import nn

from harness.errors import HarnessError, first_line
from harness.foreign import their_code
from harness.io import sha256_file
from harness.model_import import Args, ModelSource, call_factory, import_file
from harness.registry import create_model as create_registered
from harness.registry import list_models, model_entry
from harness.submission import from_submission

PLUGIN_GROUP = "harness.models"
SUBMISSION = "submission:"


def parse_model_args(text: str | None) -> Args:
    """``--model-args``: a JSON object (keyword arguments) or array (positional ones)."""
    if not text:
        return {}
    if len(text) > MAX_MODEL_ARGS_CHARS:
        raise HarnessError(
            f"--model-args: {len(text):,} characters; constructor arguments take at most {MAX_MODEL_ARGS_CHARS:,}"
        )
    try:
        value = json.loads(text, parse_constant=_not_a_number)
    except json.JSONDecodeError as exc:
        raise HarnessError(f"--model-args: not JSON ({exc.msg} at character {exc.pos}): {text[:80]!r}") from None
    except RecursionError:
        raise HarnessError("--model-args: nested too deeply to be constructor arguments") from None
    if not isinstance(value, (dict, list)):
        raise HarnessError(f"--model-args: expected a JSON object or array, got {type(value).__name__}")
    _check_finite(value)
    return value


MAX_MODEL_ARGS_CHARS = 100_000


def _not_a_number(name: str) -> Any:
    raise HarnessError(f"--model-args: {name} is not a number a constructor can take")


def _check_finite(value: Any) -> None:
    """Numbers too large for a float (1e999) are read as inf by JSON: refused, like NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        raise HarnessError(
            f"--model-args: {value} (a number beyond float range) is not a number a constructor can take"
        )
    for item in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
        _check_finite(item)


def plugins() -> dict[str, importlib.metadata.EntryPoint]:
    """Installed plugin models: entry points of the group ``harness.models`` by name."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP)}


def _attribute(module: Any, attr: str, where: str) -> Any:
    if not hasattr(module, attr):
        raise HarnessError(f"{where}: has no attribute {attr!r}")
    return getattr(module, attr)


def _from_file(spec: str, args: Args) -> tuple[nn.Module, ModelSource]:
    file_part, _, attr = spec.rpartition(":")
    path = Path(file_part).expanduser()
    if not path.is_file():
        raise HarnessError(f"--model {spec}: no such file {path}")
    module = import_file(path.resolve(), [path.resolve().parent])
    model = call_factory(_attribute(module, attr, str(path)), args, spec)
    return model, ModelSource(spec, "file", attr, args, str(path.resolve()), sha256_file(path))


def _import_here_too(module_name: str) -> Any:
    """Import ``module_name`` from the installed packages, else from the current folder (as ``python -m`` and
    uvicorn do); the current folder is on ``sys.path`` only during that import."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = module_name.split(".")[0]
        here = Path.cwd()
        if exc.name != top or not ((here / top).is_dir() or (here / f"{top}.py").is_file()):
            raise
    sys.path.insert(0, str(here))
    try:
        return importlib.import_module(module_name)
    finally:
        sys.path.remove(str(here))


def _from_module(spec: str, args: Args) -> tuple[nn.Module, ModelSource]:
    module_name, _, attr = spec.partition(":")
    try:
        with their_code("import", module_name):
            module = _import_here_too(module_name)
    except ModuleNotFoundError as exc:
        raise HarnessError(
            f"--model {spec}: cannot import {exc.name!r} (neither installed nor in the current folder {Path.cwd()})"
        ) from None
    model = call_factory(_attribute(module, attr, module_name), args, spec)
    file = getattr(module, "__file__", None)
    return model, ModelSource(spec, "module", attr, args, file, sha256_file(file) if file else None)


def _from_plugin(spec: str, args: Args) -> tuple[nn.Module, ModelSource]:
    ep = plugins()[spec]
    try:
        with their_code("import", spec):
            factory = ep.load()
    except ModuleNotFoundError as exc:
        raise HarnessError(
            f"plugin model {spec!r} ({ep.value}): needs the module {exc.name!r}, which is not installed"
        ) from None
    model = call_factory(factory, args, spec)
    file = getattr(sys.modules.get(ep.module), "__file__", None)
    return model, ModelSource(spec, "plugin", spec, args, file, sha256_file(file) if file else None)


def _from_registry(spec: str, args: Args) -> tuple[nn.Module, ModelSource]:
    if isinstance(args, list):
        raise HarnessError(
            f"--model-args: registered model {spec!r} takes keyword arguments (a JSON object), not a list"
        )
    entry = model_entry(spec)
    file = entry.source_file
    try:
        model = create_registered(spec, **args)
    except HarnessError:
        raise
    except Exception as exc:  # a configuration the family cannot build: the arguments are the input at fault
        raise HarnessError(
            f"--model-args {json.dumps(args)[:120]}: {spec} cannot be built with them ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    return model, ModelSource(
        spec, "registered", spec, args, str(file) if file else None, sha256_file(file) if file else None
    )


def resolve_model(spec: str, args: Args | None = None, trust_code: bool = False) -> tuple[nn.Module, ModelSource]:
    """Build the model ``spec`` names (see the module docstring); returns it and its description."""
    args = {} if args is None else args
    if spec.startswith(SUBMISSION):
        return from_submission(spec, args, trust_code)
    if spec in list_models():
        return _from_registry(spec, args)
    if spec in plugins():
        return _from_plugin(spec, args)
    if ":" in spec:
        file_part = spec.rpartition(":")[0]
        return _from_file(spec, args) if file_part.endswith(".py") or "/" in file_part else _from_module(spec, args)
    raise HarnessError(_unknown(spec))


def _unknown(spec: str) -> str:
    """What ``spec`` probably meant, said in one line: a file without ``:NAME``, a submission without
    ``submission:``, or a name close to a known one."""
    path = Path(spec).expanduser()
    if path.suffix == ".py" and path.is_file():
        classes = _classes_in(path)
        example = f" (e.g. --model {spec}:{classes[0]})" if classes else ""
        found = f"; it defines {', '.join(classes)}" if classes else "; it defines no class"
        return f"--model {spec}: a file needs the class or factory after a colon, FILE.py:NAME{found}{example}"
    if path.is_dir() or (path.is_file() and path.suffix == ".zip"):
        return f"--model {spec}: a folder or zip is read as a code submission: did you mean --model submission:{spec} (with --trust-code)?"
    known = list_models() + sorted(plugins())
    close = difflib.get_close_matches(spec, known, n=3, cutoff=0.6)
    if close:
        return f"unknown model {spec!r}; did you mean {' or '.join(repr(c) for c in close)}?"
    return f"unknown model {spec!r}; known: {', '.join(known)} (or FILE.py:NAME, package.module:NAME, submission:PATH)"


def _classes_in(path: Path) -> list[str]:
    """The top-level classes of a Python file, read with ``ast`` (never run); [] when it does not parse."""
    if path.stat().st_size > MAX_SOURCE_BYTES:
        return []
    try:
        tree = ast.parse(path.read_text(errors="replace"))
    except (SyntaxError, ValueError, RecursionError):
        return []
    return [node.name for node in tree.body if isinstance(node, ast.ClassDef)]


MAX_SOURCE_BYTES = 1 << 20  # a larger file is not parsed for a hint


def create_model(spec: str, *args: Any, trust_code: bool = False, **kwargs: Any) -> nn.Module:
    """Build any model source; positional or keyword arguments go to its constructor (``None`` keywords dropped)."""
    if args and kwargs:
        raise HarnessError(f"model {spec!r}: give positional or keyword arguments, not both")
    chosen: Args = list(args) if args else {k: v for k, v in kwargs.items() if v is not None}
    return resolve_model(spec, chosen, trust_code)[0]
