"""The house rules that keep the seams clean, checked on the source itself."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import torch

from harness import create_model, list_models
from harness.models import flowcnrdb as flowcnrdb_module
from harness.options import FLAGSHIP

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = ROOT / "harness" / "options.py"
SOURCES = sorted((ROOT / "harness").rglob("*.py")) + sorted((ROOT / "models").glob("*.py"))


def test_no_function_body_over_50_lines():
    long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.end_lineno - node.body[0].lineno + 1  # the signature, one option a line, does not count
                if body > 50:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({body} lines)")
    assert not long, long


def test_only_the_variants_module_names_registered_models():
    names = re.compile(r"\b(" + "|".join(map(re.escape, list_models())) + r")\b")
    found = []
    for path in SOURCES:
        if path == ROOT / "harness" / "variants.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and names.search(node.value):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {names.search(node.value).group(0)}")
    # the one exception: the flagship's name, train's default, is in the torch-free settings module
    assert found == [f"harness/options.py:{_line_of(OPTIONS, 'FLAGSHIP = ')}: {FLAGSHIP}"], found
    assert FLAGSHIP in list_models()


def _line_of(path: Path, start: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(start))


def test_the_published_model_file_is_plain():
    """The file a code submission ships: the published network, no runtime (threads, clocks, private torch API)."""
    path = Path(flowcnrdb_module.__file__)
    text = path.read_text()
    assert len(text.splitlines()) <= 650
    imported = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert not imported & {"threading", "os", "time", "concurrent"}, imported
    assert "torch.ops.mkldnn" not in text
    for model_file in sorted((ROOT / "models").glob("*.py")):
        assert "set_num_threads" not in model_file.read_text(), model_file.name


def test_tracing_sees_the_published_graph():
    """fvcore counts FLOPs on a ``torch.jit.trace`` graph: the published computation, 1x1 convolutions and box sums."""
    model = create_model("flowcnrdb_tiny").eval()
    x = torch.rand(1, 9, 64, model.config.train_size + 64)  # wider than the training crop: windowed GRNs
    with torch.no_grad():
        traced = torch.jit.trace(model, x, check_trace=False)
        assert torch.allclose(traced(x), model(x), atol=1e-5)
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert "aten::_convolution" in kinds and "aten::cumsum" in kinds
    assert not any("mkldnn" in kind for kind in kinds) and "aten::addmm" not in kinds


# The rooms of the README's "Architecture" section, in the order data flows: a module imports only from its own
# room or rooms before it (function-level imports included).
LAYERS = [
    (
        "harness.errors",
        "harness.challenge",
        "harness.options",
        "harness.json_values",
        "harness.progress",
        "harness.io",
        "harness.archive",
        "harness.allocator",
    ),
    ("harness.models",),
    ("harness.data",),
    (
        "harness",
        "harness.model_registry",
        "harness.variants",
        "harness.registry",
        "harness.checkpoint",
        "harness.model_table",
        "harness.model_import",
        "harness.submission",
        "harness.sources",
        "harness.loading",
    ),
    ("harness.metrics", "harness.inference", "harness.backends"),
    ("harness.scoring", "harness.run", "harness.merge", "harness.tables"),
    ("harness.evaluate", "harness.train", "harness.budget", "harness.bench", "harness.export"),
    ("harness.report", "harness.package", "harness.organise"),
    ("harness.cli",),
]


def _layer(module: str) -> int:
    best = max(
        (prefix for layer in LAYERS for prefix in layer if module == prefix or module.startswith(prefix + ".")), key=len
    )
    return next(i for i, layer in enumerate(LAYERS) if best in layer)


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = ("harness", "models", *rel.parts[1:]) if rel.parts[0] == "models" else rel.parts
    return ".".join(p for p in parts if p != "__init__")


def test_imports_flow_one_way_through_the_rooms():
    wrong = []
    for path in SOURCES:
        name = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            targets = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            for target in targets:
                if (target == "harness" or target.startswith("harness.")) and _layer(target) > _layer(name):
                    wrong.append(f"{name} imports {target}")
    assert not wrong, wrong


def _import_graph() -> dict[str, set[str]]:
    """Module -> the harness modules it imports (function-level imports included), by explicit import statements."""
    names = {_module_name(path) for path in SOURCES}
    graph: dict[str, set[str]] = {}
    for path in SOURCES:
        edges = graph.setdefault(_module_name(path), set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            else:
                continue
            for target in targets:
                parts = target.split(".")
                known = next(
                    (".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in names), None
                )
                if known is not None:
                    edges.add(known)
                    break
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, or of one that imports itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_anywhere_and_the_check_finds_an_injected_one():
    graph = _import_graph()
    assert "harness.registry" in graph["harness.evaluate"] and "harness.variants" in graph["harness.registry"]
    assert cycles(graph) == []
    injected = {**graph, "harness.variants": graph["harness.variants"] | {"harness.registry"}}
    assert cycles(injected) == [["harness.registry", "harness.variants"]]
    assert cycles({**graph, "harness.io": graph["harness.io"] | {"harness.io"}}) == [["harness.io"]]


def test_model_files_import_only_torch():
    for path in sorted((ROOT / "models").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= {"torch", "__future__"} | sys.stdlib_module_names, (
                path.name,
                roots,
            )  # nothing to install but torch
