"""Layers import only downward: contract and helpers <- runtime <- the function <- protocols <- adapters <- tooling.

Every ``import`` of a modelfn module, at the top of a file or inside a function (the lazy imports
that keep the start-up path light), TYPE_CHECKING ones included, must name a module of the same
layer or one below. The request path every adapter calls (``adapters/dispatch.py``) sits above the
protocols it routes to. The edge runner (``edge/``) is an adapter of its own, with the fewest
modules below it (see ``tests/edge``); so are the batch engines (``beam/``, ``spark.py``) and the
model source they share (``offline.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "modelfn"
#: Top-level module or package -> its layer; anything not named is the bottom (contract, errors, http...).
LAYERS = {
    "runtime": 1, "batch": 1, "registry": 1, "monitoring": 1,
    "function": 2, "group": 2,
    "protocols": 3, "routing": 3,
    "adapters": 4, "edge": 4, "offline": 4, "beam": 4, "spark": 4,
    "tooling": 5, "cli": 5, "__main__": 5,
}  # fmt: skip


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "modelfn":
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "modelfn"]
    return found


def module_of(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(("modelfn", *parts)).removesuffix(".__init__")


def test_every_import_points_down_or_across() -> None:
    upward = [f"{module_of(path)}:{line} imports {target}"
              for path in sorted(SRC.rglob("*.py")) for target, line in imports(path)
              if layer(target) > layer(module_of(path))]  # fmt: skip
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path) -> None:
    planted = tmp_path / "function.py"
    planted.write_text("def f():\n    from modelfn.protocols import router\n")
    assert [(t, layer(t) > layer("modelfn.function")) for t, _ in imports(planted)] == [("modelfn.protocols", True)]


@pytest.mark.parametrize("module", ["modelfn.function", "modelfn.group", "modelfn.runtime.model"])
def test_nothing_below_the_protocols_reaches_the_router(module) -> None:
    path = SRC / Path(*module.split(".")[1:]).with_suffix(".py")
    assert not [t for t, _ in imports(path) if t.startswith(("modelfn.protocols", "modelfn.adapters"))]


BENCH = Path(__file__).parent.parent / "bench"


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """``{module: modules of the same tree it imports}``, lazy and TYPE_CHECKING imports included.

    A module's edge to its own enclosing packages is left out: Python imports them first whatever
    the module says, so that edge is always there and tells nothing. A package that hands work to
    its members (``runtime/stores``' factory importing ``stores.gcs``) is therefore no circle.
    """
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if any(part.startswith(".") for part in parts):  # bench/.venvs, .cache: installed, not ours
            continue
        modules[".".join((package, *parts) if package else parts).removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name if path.name == "__init__.py" else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}".rstrip(".")
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            ancestors = {name.rsplit(".", n)[0] for n in range(1, name.count(".") + 1)}
            graph[name] |= {t for t in targets if t in modules and t != name and t not in ancestors}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = stack[stack.index(node) :]
                    del stack[stack.index(node) :]
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in stack:
                low[node] = min(low[node], index[child])
    return found


@pytest.mark.parametrize(("root", "package"), [(SRC, "modelfn"), (BENCH, "")], ids=["src", "bench"])
def test_no_module_imports_one_that_imports_it_back(root, package) -> None:
    assert circles(import_graph(root, package)) == []


def test_the_circle_check_sees_a_lazy_circle_and_a_type_checking_one(tmp_path) -> None:
    (tmp_path / "plans.py").write_text("def f():\n    from render import x\n")
    (tmp_path / "render.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import plans\n")
    (tmp_path / "alone.py").write_text("import render\n")
    assert circles(import_graph(tmp_path, "")) == [["plans", "render"]]
