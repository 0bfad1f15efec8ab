"""``python -m modelfn`` is the ``modelfn`` command."""

from modelfn.cli import main

main()
