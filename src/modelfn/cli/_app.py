"""The ``modelfn`` command group and what its commands share: errors as messages, contracts compiled."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelfn import __version__
from modelfn.errors import ModelfnError

if TYPE_CHECKING:
    from modelfn.contract import Contract
    from modelfn.runtime.model import LoadedModel
    from modelfn.settings import Settings

ENTRYPOINT_FILE = "main.py"
ENTRYPOINT_TARGET = "handle"


@click.group()
@click.version_option(__version__, prog_name="modelfn")
def cli() -> None:
    """Turn a trained model into a fast, secure serverless function."""


@contextlib.contextmanager
def click_errors() -> Iterator[None]:
    """Show a modelfn error as the command's error message (exit 1), never as a traceback."""
    try:
        yield
    except ModelfnError as exc:
        raise click.ClickException(exc.message) from None


def load_pipeline(folder: Path, contract: Contract, settings: Settings) -> LoadedModel:
    """Load a pipeline as its function would: beside the sibling folders its steps name."""
    from modelfn.group import FunctionGroup

    names = [folder.name, *dict.fromkeys(step.model for step in contract.steps)]
    try:
        group = FunctionGroup(folder.parent, names, settings)
    except ValueError as exc:
        raise click.ClickException(f"{folder}: {exc}") from None
    return group.member(folder.name).model()


def compile_folder(folder: Path) -> Contract:
    """Validate the contract and compile it, so the function's cold start skips YAML."""
    from modelfn.contract import compile_contract, load_contract

    try:
        return compile_contract(folder)
    except OSError as exc:  # a read-only folder only loses the speed-up
        click.echo(f"note: compiled contract not written ({exc.strerror or exc}); the YAML is read instead", err=True)
        return load_contract(folder)


def main() -> None:
    cli()
