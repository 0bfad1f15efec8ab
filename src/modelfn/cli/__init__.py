"""The ``modelfn`` command line: tooling, never imported by a running function.

One group (:mod:`modelfn.cli._app`); its commands live by subject in the modules imported here.
"""

from modelfn.cli import batch, deploy, folders, keys, monitor, project, registry  # noqa: F401  (each registers its commands)
from modelfn.cli._app import cli, main

__all__ = ["cli", "main"]
