"""``modelfn new DIR``: a project of the user's own, laid out as modelfn's example repository is.

::

    DIR/
      functions/            one folder per function (``modelfn init`` adds them)
      infra/gcp/main.tf     the Terraform roots: the project's own to edit
      infra/aws/main.tf
      infra/modules/        modelfn's Terraform modules, at the installed version (``modelfn render``)
      cloudbuild.yaml       generated from the contracts by ``modelfn render``, as are
      serverless.yml        infra/*/functions.auto.tfvars.json and infra/gcp/openapi.yaml.tftpl
      tests/                ``modelfn check`` on every function (``make test``)
      Makefile, requirements.txt, README.md, .gitignore

Everything comes from the installed package (:mod:`modelfn.tooling.resources`): nothing is read
from a checkout of modelfn.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from modelfn import __version__
from modelfn.errors import ContractError
from modelfn.tooling.render import render, write
from modelfn.tooling.resources import asset_tree

#: Template files whose name in the package differs from the one they get (setuptools and some
#: tools skip dotfiles in package data).
RENAMED = {"gitignore": ".gitignore"}


def new_project(root: Path) -> list[str]:
    """Write a new project at ``root`` (absent, or an empty folder); the files written, relative to it."""
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ContractError(f"{root} exists and is not an empty folder; modelfn new writes a new project only")
    name = root.resolve().name
    root.parent.mkdir(parents=True, exist_ok=True)
    # Written whole in a scratch folder beside it, then moved into place: never half a project.
    staged = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root.resolve().parent))
    try:
        written = []
        for relative, text in asset_tree("project").items():
            target = staged / RENAMED.get(relative, relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text.replace("{{name}}", name).replace("{{version}}", __version__))
            written.append(target.relative_to(staged).as_posix())
        (staged / "functions").mkdir()
        (staged / "functions" / ".gitkeep").write_text("")  # git keeps the empty folder
        written.append("functions/.gitkeep")
        files = render(staged, allow_empty=True)
        written += write(staged, files)
        if root.exists():
            root.rmdir()  # empty, checked above
        staged.rename(root)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return sorted(written)
