"""The package layout: stage sub-packages, imports that run one way, no cycles, small modules.

Every ``import`` in every module counts, also those inside functions (deferred imports are
still a design dependency), parsed with :mod:`ast` so that nothing is executed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import geomm

PACKAGE = Path(geomm.__file__).parent

# Lowest first. A module may import from its own sub-package and from any layer below its own.
# qgis (the QGIS plugin, run by QGIS's own Python, and its installer) imports nothing of geomm.
LAYERS = ["qgis", "shared", "sources", "stack", "model", "vector", "predict", "learn", "assess",
          "batch", "demo", "cli", "api"]
SHARED = {"errors", "classes", "recipe", "modality", "sampledata", "_samplecache", "info",
          "metrics", "_files", "_cache", "_outputs", "_lazy", "_version", "_lock", "_remote",
          "stacspec", "stacpresets"}
STAGES = {"sources", "stack", "model", "vector", "predict", "learn", "assess", "batch", "cli",
          "qgis"}
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """geomm modules that ``name`` imports, resolved to the module (not the attribute)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]
        found |= {t for t in targets if t in MODULES and t != name}
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(name: str) -> str:
    parts = name.split(".")
    if len(parts) == 1:
        return "api"  # geomm/__init__.py: the lazy public names
    if parts[1] in STAGES:
        return parts[1]
    if parts[1] == "demo":
        return "demo"
    assert parts[1] in SHARED, f"{name}: a new top-level module; put it in a stage sub-package"
    return "shared"


def test_the_tree_has_one_sub_package_per_stage():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == STAGES
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert top == SHARED | {"demo"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_run_one_way(name):
    mine = _layer(name)
    upward = []
    for dep in sorted(GRAPH[name]):
        theirs = _layer(dep)
        if theirs != mine and LAYERS.index(theirs) > LAYERS.index(mine):
            upward.append(f"{dep} ({theirs})")
    assert not upward, f"{name} ({mine}) imports upward: {upward}"


def test_no_import_cycle():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles


def _third_party(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_the_model_contract_knows_no_lightning_and_the_raster_io_no_torch():
    for name, path in MODULES.items():
        used = _third_party(path)
        if name.startswith("geomm.model"):
            assert not used & {"lightning", "pytorch_lightning"}, name
        if name.startswith("geomm.stack") or _layer(name) == "shared":
            assert not used & {"torch", "torchgeo", "lightning", "timm"}, name


def test_modules_stay_small():
    big = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    assert {n: k for n, k in big.items() if k > MAX_LINES} == {}
