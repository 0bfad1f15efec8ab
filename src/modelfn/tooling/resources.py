"""The files the tooling ships inside the package, so that every command works outside a checkout.

``modelfn/tooling/assets/`` holds the container templates (``docker/``), the Terraform roots and the
modules they use (``terraform/``), and the pinned versions that bundles are resolved with
(``pins/constraints.txt``, the set the tests ran with; ``pins/engines.txt`` for Beam's image). They
are read through :mod:`importlib.resources`, never looked up in the folders above the working
directory. (In this repository, ``packaging/`` and ``infra/`` link to them: one copy of each.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path


def asset(*parts: str) -> Traversable:
    """The shipped file or folder ``assets/<parts...>``."""
    found = files("modelfn.tooling").joinpath("assets", *parts)
    if not (found.is_file() or found.is_dir()):
        raise FileNotFoundError(f"modelfn's package lacks assets/{'/'.join(parts)}: reinstall modelfn")
    return found


def read_asset(*parts: str) -> str:
    return asset(*parts).read_text(encoding="utf-8")


@contextlib.contextmanager
def asset_file(*parts: str) -> Iterator[Path]:
    """A real path to a shipped file, for the programs that want one (``pip --constraint``)."""
    with as_file(asset(*parts)) as path:
        yield Path(path)


def asset_tree(*parts: str) -> dict[str, str]:
    """Every text file under the shipped folder ``assets/<parts...>``: ``{path relative to it: text}``."""
    found: dict[str, str] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            elif entry.is_file() and not entry.name.endswith((".pyc", ".DS_Store")):
                found[prefix + entry.name] = entry.read_text(encoding="utf-8")

    walk(asset(*parts), "")
    return found
