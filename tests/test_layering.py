"""Layers: the engine (``routing`` without ``routing.cli`` and ``routing.service``) imports no front end and
no map code, ``maps`` imports no front end, and the project's modules import each other without cycles.

Imports are checked in fresh interpreters (a clean ``sys.modules``); cycles on the import graph read from
the source with ``ast``. Top-level imports run when a module is imported and must form no cycle;
imports inside functions run later and may close one (the CLI loads its command modules that way):
those cycles are reported as a warning, not failed.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("routing", "maps")
FRONT_ENDS = ("routing.cli", "routing.service")


def _modules(package: str) -> dict[str, Path]:
    """Every module of a package in the source tree, by dotted name."""
    out = {}
    for path in sorted((REPO / package).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts[-1] == "__main__":
            continue  # runs the CLI when executed; importing it would too
        out[".".join(parts)] = path
    return out


ALL = {name: path for package in PACKAGES for name, path in _modules(package).items()}
ENGINE = sorted(m for m in _modules("routing") if not any(m == f or m.startswith(f + ".") for f in FRONT_ENDS))
MAPS = sorted(_modules("maps"))

# In a fresh interpreter: import each module in turn and report, per module, which of the watched modules
# had appeared in sys.modules after it (the first module listing one is the one that pulled it in).
_PROBE = r"""
import importlib, json, sys
modules, watched = json.loads(sys.argv[1]), json.loads(sys.argv[2])
def hits():
    return sorted(w for w in watched if any(m == w or m.startswith(w + ".") for m in sys.modules))
report = {}
for name in modules:
    importlib.import_module(name)
    report[name] = hits()
print(json.dumps(report))
"""


def _imports_in_fresh_interpreter(modules: list[str], watched: list[str]) -> dict[str, list[str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(modules), json.dumps(watched)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _first_offenders(report: dict[str, list[str]]) -> dict[str, list[str]]:
    seen: set[str] = set()
    out = {}
    for name, hits in report.items():
        new = [h for h in hits if h not in seen]
        if new:
            out[name] = new
            seen.update(new)
    return out


def test_engine_imports_no_front_end_and_no_maps() -> None:
    assert "routing.network" in ENGINE and "routing.locate.coverage" in ENGINE
    watched = ["fastapi", "starlette", "uvicorn", "folium", "branca", "maps", *FRONT_ENDS]
    offenders = _first_offenders(_imports_in_fresh_interpreter(ENGINE, watched))
    assert offenders == {}, f"engine modules importing a front end or map code: {offenders}"


def test_maps_import_no_front_end() -> None:
    offenders = _first_offenders(_imports_in_fresh_interpreter(MAPS, ["fastapi", "uvicorn", *FRONT_ENDS]))
    assert offenders == {}, f"maps modules importing the CLI or the service: {offenders}"


# ------------------------------------------------------------------------------------------ import graph


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The project modules an import statement loads (the named module or, for ``from P import n``, the
    submodule ``P.n`` when there is one)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative: resolve against the importing package
            package = module if ALL[module].name == "__init__.py" else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in ALL else base for a in node.names]
    found = set()
    for name in names:
        while name and name not in ALL:  # `import routing.x.y` of a non-module attribute: its module
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found


def _with_parents(importer: str, target: str) -> set[str]:
    """``target`` and the packages above it that importing it runs, except the importer's own packages
    (they are initialised, perhaps partly, before the importer runs)."""
    own = {importer.rsplit(".", k)[0] for k in range(importer.count(".") + 1)}
    out = {target}
    name = target
    while "." in name:
        name = name.rpartition(".")[0]
        if name in ALL and name not in own:
            out.add(name)
    return out


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(top-level edges, function-level edges) between the project's modules; imports under
    ``if TYPE_CHECKING:`` never run and are left out."""
    top: dict[str, set[str]] = {m: set() for m in ALL}
    inner: dict[str, set[str]] = {m: set() for m in ALL}

    def visit(module: str, nodes: list[ast.stmt], in_function: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                visit(module, node.orelse, in_function)
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(module, node):
                    edges = _with_parents(module, target) - {module}
                    (inner if in_function else top)[module].update(edges)
                continue
            nested = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    visit(module, [c for c in children if isinstance(c, ast.stmt | ast.ExceptHandler)],
                          in_function or nested)
            if isinstance(node, ast.ExceptHandler):
                visit(module, node.body, in_function)
            for case in getattr(node, "cases", []):  # match statements
                visit(module, case.body, in_function)

    for module, path in ALL.items():
        visit(module, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body, False)
    return top, inner


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                connect(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(out)


def test_the_graph_sees_the_imports() -> None:
    top, inner = import_graph()
    assert "routing.errors" in top["routing.network"]
    assert "routing.locate" in top["routing.staging"]  # a package run by importing its submodule
    assert "maps.base" in inner["routing.cli.dispatch"]  # imported where the map is drawn
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_top_level_imports() -> None:
    top, inner = import_graph()
    found = cycles(top)
    assert found == [], f"top-level import cycles: {found}"
    both = {m: top[m] | inner[m] for m in ALL}
    late = cycles(both)
    if late:  # allowed (they close only when a function runs), but worth knowing about
        warnings.warn(f"import cycles closed by function-level imports: {late}", stacklevel=1)


def test_no_engine_module_imports_a_front_end_even_inside_a_function() -> None:
    # A function-level import escapes the fresh-interpreter checks above until that function runs.
    top, inner = import_graph()
    front = ("routing.cli", "routing.service", "maps")
    engine = [m for m in ALL if m.startswith("routing") and not m.startswith(("routing.cli", "routing.service"))]
    bad = {m: sorted(t for t in top[m] | inner[m] if t.startswith(front)) for m in engine}
    assert {m: t for m, t in bad.items() if t} == {}
