"""MkDocs hook: the reference pages generated from the code, never retyped.

- ``<!-- modelfn:settings -->``: every ``Settings`` field, its variable, default and the comment above it;
- ``<!-- modelfn:contract -->``: every field of the contract's types (``modelfn.contract``) with its comment;
- ``<!-- modelfn:routes -->``: every HTTP route from the route table (``modelfn.protocols.build_router``);
- the benchmark charts (``bench/results/*.png``) are published under ``charts/``.

The CLI reference comes from the click commands through mkdocs-click.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "modelfn"


def _fields(path: Path, classes: set[str] | None) -> dict[str, list[tuple[str, str, str]]]:
    """``{class: [(field, default, the #: comment above it)]}`` read from the source."""
    source = path.read_text()
    lines = source.splitlines()
    found: dict[str, list[tuple[str, str, str]]] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef) or (classes is not None and node.name not in classes):
            continue
        rows, last = [], ""
        for item in node.body:
            if not isinstance(item, ast.AnnAssign) or not isinstance(item.target, ast.Name):
                continue
            comment, number = [], item.lineno - 2
            while number >= 0 and lines[number].strip().startswith("#:"):
                comment.insert(0, lines[number].strip()[2:].strip())
                number -= 1
            text = " ".join(comment) or (f"(see {last})" if last else "")
            last = item.target.id if comment else last
            default = ast.get_source_segment(source, item.value) if item.value is not None else "required"
            rows.append((item.target.id, default or "", text.replace("|", "\\|")))
        found[node.name] = rows
    return found


def _settings() -> str:
    rows = _fields(SRC / "settings.py", {"Settings"})["Settings"]
    out = ["| variable | default | what it does |", "|---|---|---|"]
    out += [f"| `MODELFN_{name.upper()}` | `{default}` | {text} |" for name, default, text in rows]
    return "\n".join(out)


def _contract() -> str:
    out = []
    for name, rows in _fields(SRC / "contract.py", None).items():
        if not rows or name.startswith("_"):
            continue
        out += [f"### `{name}`", "", "| field | default | meaning |", "|---|---|---|"]
        out += [f"| `{field}` | `{default}` | {text} |" for field, default, text in rows]
        out.append("")
    return "\n".join(out)


def _routes() -> str:
    from modelfn.protocols import build_router

    out = ["| method | path | access | what it does |", "|---|---|---|---|"]
    for route in build_router().routes:
        summary = route.doc.get("summary", "").replace("|", "\\|")
        out.append(f"| {route.method} | `{route.template}` | {route.access} | {summary} |")
    return "\n".join(out)


GENERATED = {"settings": _settings, "contract": _contract, "routes": _routes}


def on_page_markdown(markdown: str, **_: Any) -> str:
    for name, make in GENERATED.items():
        marker = f"<!-- modelfn:{name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown


def on_files(files: Files, config: Any) -> Files:
    for chart in sorted((ROOT / "bench" / "results").glob("*.png")):
        files.append(File.generated(config, f"charts/{chart.name}", abs_src_path=str(chart)))
    return files
