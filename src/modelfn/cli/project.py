"""Commands on a whole project: new."""

from __future__ import annotations

from pathlib import Path

import click

from modelfn.cli._app import cli, click_errors


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def new(directory: Path) -> None:
    """Write a new project in DIRECTORY: functions/, infra/, cloudbuild.yaml, serverless.yml, tests/.

    Everything it writes comes from the installed modelfn; add a model with
    ``modelfn init MODEL --name NAME --description TEXT`` inside it.
    """
    from modelfn.tooling.project import new_project

    with click_errors():
        written = new_project(directory)
    click.echo(f"wrote     {directory}/: {len(written)} files (functions/, infra/, cloudbuild.yaml, tests/...)")
    click.echo(f"next      cd {directory} && modelfn init MODEL --name NAME --description TEXT")
