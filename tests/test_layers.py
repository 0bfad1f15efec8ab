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
    "runtime": 1, "batch": 1, "registry": 1,
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
