"""The house's layering, read from the sources (every import, function-level ones included):
no import cycles between modules, target-independent passes never import the backend, the
target below the backend never imports the passes, and no pass writes module state."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The wheel's package layout (pyproject's [tool.scikit-build.wheel.packages]).
PACKAGES = {"nm_tvm": ROOT / "nm_tvm", "nm_tvm.passes": ROOT / "passes",
            "nm_tvm.target": ROOT / "target", "nm_tvm.models": ROOT / "models"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if package == "nm_tvm" and parts[0] in ("passes", "target", "models"):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Modules of the package that ``name`` imports (X for ``from X import module`` when the
    imported name is itself a module)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + is_package]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                out.add(sub if sub in MODULES else module)
    return {m for m in out if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan). A package's
    ``__init__`` that re-exports its own submodules is not a cycle of the code, so edges
    from a submodule to an enclosing package are left out."""
    edges = {a: {b for b in bs if not a.startswith(b + ".")} for a, bs in GRAPH.items()}
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return comps


def test_module_map_sees_the_whole_house():
    for name in ("nm_tvm.runtime", "nm_tvm.passes.linearize", "nm_tvm.target.backend.lower",
                 "nm_tvm.target.codegen.gemm", "nm_tvm.models.zoo"):
        assert name in MODULES
    assert "nm_tvm.calibrate" in GRAPH["nm_tvm.runtime"]  # function-level imports count too


def test_no_import_cycles():
    assert _cycles() == []


def test_cycle_finder_finds_a_planted_cycle():
    GRAPH["nm_tvm.calibrate"].add("nm_tvm.runtime")
    try:
        assert ["nm_tvm.calibrate", "nm_tvm.runtime"] in _cycles()
    finally:
        GRAPH["nm_tvm.calibrate"].discard("nm_tvm.runtime")


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("nm_tvm.passes")))
def test_passes_do_not_import_the_backend(name):
    assert not {m for m in GRAPH[name] if m.startswith("nm_tvm.target.backend")}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("nm_tvm.target")
                                        and not n.startswith("nm_tvm.target.backend")))
def test_target_below_the_backend_imports_no_passes(name):
    assert not {m for m in GRAPH[name]
                if m.startswith("nm_tvm.passes") or m.startswith("nm_tvm.target.backend")}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("nm_tvm.passes")
                                        or n.startswith("nm_tvm.target.backend")))
def test_passes_write_no_module_state(name):
    """No ``global`` statement and no assignment into another module's attributes: a pass's
    results go into its compile record (nm_tvm/record.py)."""
    tree = ast.parse(MODULES[name].read_text())
    for node in ast.walk(tree):
        assert not isinstance(node, ast.Global), f"{name}:{node.lineno}: global statement"
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                base = t.value if isinstance(t, (ast.Attribute, ast.Subscript)) else None
                while isinstance(base, (ast.Attribute, ast.Subscript)):
                    base = base.value
                imported = {a.asname or a.name for n in ast.walk(tree)
                            if isinstance(n, (ast.Import, ast.ImportFrom))
                            and getattr(n, "module", None) != "__future__" for a in n.names}
                assert not (isinstance(base, ast.Name) and base.id in imported), \
                    f"{name}:{node.lineno}: writes into imported module '{base.id}'"
