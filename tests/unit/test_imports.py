"""The house rules of imports, checked on the source (no module is imported).

Every module of ``ume/`` is parsed with :mod:`ast`; every ``import`` / ``from ... import``
(module-level or inside a function: a lazy import is still a dependency) and every string
constant that is the dotted name of a ume module (a dynamic
``importlib.import_module("ume.x.y")`` target) is an edge of the import graph. The graph must have

* no cycle;
* no upward import: a module imports only from its own layer or lower ones, by
  :data:`LAYERS` (the same table is drawn in ``docs/architecture.md``; keep the two together);
* no snakemake: the workflow calls ume, never the other way round.

A new module needs no entry when its package is listed; a new top-level module or package
does, so that its place in the house is a decision someone wrote down.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "ume"

#: Layer of each room, lowest first: a module's own entry, else its innermost listed package.
LAYERS: dict[str, int] = {
    # 0: the bottom, shared by every stage; no ume imports except each other
    "ume": 0,  # the package itself: a docstring and __version__
    "ume.errors": 0,
    "ume.offline": 0,
    "ume.items": 0,
    "ume.pair_table": 0,
    "ume.io": 0,
    "ume.fingerprints": 0,
    "ume.progress": 0,
    "ume.store": 0,
    # 1: the typed config
    "ume.config": 1,
    # 2: what the stages talk about: benchmark suites, the T-CoT format, the server client
    "ume.clients": 2,
    "ume.suites": 2,
    "ume.tcot": 2,
    # 3: THE input builder (item + T-CoT + evidence -> model inputs)
    "ume.inputs": 3,
    # 4: backbones and the Embedder
    "ume.models": 4,
    # 5: data construction stages and the launcher
    "ume.data": 5,
    "ume.annotate": 5,
    "ume.launch": 5,
    # 6: evaluation (the Reasoner/Embedder caches are reused by training)
    "ume.eval": 6,
    # 7: training stages
    "ume.train": 7,
    # 8: reports over evaluation results; the server of a trained pair
    "ume.report": 8,
    "ume.serve": 8,
    # 9: entry points: the CLI the rules call, the plan the rule files call
    "ume.cli": 9,
    "ume.plan": 9,
    "ume.__main__": 9,
}


def module_name(path: Path, package: Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """``{module name: file}`` of every module of ``package``."""
    return {module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def _imported(node: ast.AST, name: str, is_package: bool) -> Iterator[str]:
    """Every module name ``node`` imports (possibly not ume's), resolved when relative."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = name.split(".")
            base = base[: len(base) - node.level + (1 if is_package else 0)]
            prefix = ".".join([*base, node.module] if node.module else base)
        else:
            prefix = node.module or ""
        yield prefix
        for alias in node.names:
            yield f"{prefix}.{alias.name}"  # `from pkg import module`
    elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value:
        yield node.value  # "ume.x.y" as a dynamic import target ("ume" alone is a name)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``; ``import a.b.c`` counts as ``a.b.c``."""
    mods = modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(tree):
            for target in _imported(node, name, is_package):
                if target in mods and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def external_imports(package: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: top-level names of what it imports}`` (stdlib, third party, ume)."""
    out: dict[str, set[str]] = {}
    for name, path in modules(package).items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        tops = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops.add(node.module.split(".")[0])
        out[name] = tops
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def layer(module: str) -> int | None:
    """The module's layer; ``None`` when neither it nor a package below ``ume`` is listed."""
    if module in LAYERS:
        return LAYERS[module]
    parts = module.split(".")
    for n in range(len(parts) - 1, 1, -1):  # enclosing packages, never the bare root "ume"
        got = LAYERS.get(".".join(parts[:n]))
        if got is not None:
            return got
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``"a (layer i) -> b (layer j)"`` for every import of a higher layer."""
    out = []
    for src, deps in sorted(graph.items()):
        for dst in sorted(deps):
            ls, ld = layer(src), layer(dst)
            if ls is not None and ld is not None and ld > ls:
                out.append(f"{src} (layer {ls}) -> {dst} (layer {ld})")
    return out


# ------------------------------------------------------------------------------ the tests
def test_the_checks_see_what_they_should():
    """The helpers find a cycle, an upward import and a relative import (no vacuous pass)."""
    g = {"ume.a": {"ume.b"}, "ume.b": {"ume.c"}, "ume.c": {"ume.a"}, "ume.d": set()}
    assert cycles(g) == [["ume.a", "ume.b", "ume.c"]]
    assert upward_imports({"ume.io": {"ume.cli"}}) == ["ume.io (layer 0) -> ume.cli (layer 9)"]
    assert layer("ume.suites.synth.scenes") == 2 and layer("ume.new_room") is None
    node = ast.parse("from .format import x").body[0]
    assert "ume.tcot.format" in set(_imported(node, "ume.tcot", is_package=True))
    assert "ume.tcot.format" in set(_imported(node, "ume.tcot.evidence", is_package=False))
    graph = import_graph()
    assert "ume.items" in graph["ume.inputs"]  # a plain import is an edge
    assert "ume.suites.registry" in graph["ume.eval.run"]  # a lazy one too


def test_every_module_has_a_layer():
    unplaced = [m for m in modules() if layer(m) is None]
    assert not unplaced, (
        f"modules without a layer: {unplaced}; add their package to LAYERS in "
        "tests/unit/test_imports.py and to the layer table of docs/architecture.md"
    )


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, (
        "import cycles (each a group of modules that import each other): "
        + "; ".join(" <-> ".join(c) for c in found)
        + "; move what both need into a lower module"
    )


def test_no_upward_import():
    found = upward_imports(import_graph())
    assert not found, (
        "imports of a higher layer (see LAYERS in this file and docs/architecture.md):\n  "
        + "\n  ".join(found)
        + "\nmove the shared code down, or the importing code up"
    )


def test_ume_never_imports_snakemake():
    found = sorted(m for m, tops in external_imports().items() if "snakemake" in tops)
    assert not found, f"{found} import snakemake; the workflow calls ume, never the reverse"
