"""``modelfn batch``: predict every row of files, on this machine or on Apache Beam."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from modelfn.cli._app import cli, click_errors


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("source")
@click.option("--output", required=True, help="Where results go: a folder, gs://bucket/prefix or s3://bucket/prefix.")
@click.option("--database", default="", help="Also upsert one row per prediction: sqlite:///path/results.db.")
@click.option(
    "--chunk-rows", type=click.IntRange(1, 65536), default=None,
    help="Rows per inference call. Default: 1024 here; on Beam, the contract's batching block (else 1024).",
)  # fmt: skip
@click.option("--model", "model_name", default=None, help="The model to run in a several-model function.")
@click.option(
    "--runner", type=click.Choice(["local", "beam"]), default="local", show_default=True,
    help="local: this process; beam: an Apache Beam pipeline (pip install 'modelfn[beam]'), locally on "
    "FnApiRunner or on Dataflow with --runner-option=--runner=DataflowRunner.",
)  # fmt: skip
@click.option(
    "--runner-option", "runner_options", multiple=True, metavar="FLAG",
    help="A Beam pipeline option, repeatable: --runner-option=--direct_num_workers=2.",
)  # fmt: skip
def batch(
    folder: Path, source: str, output: str, database: str, chunk_rows: int | None, model_name: str | None,
    runner: str, runner_options: tuple[str, ...],
) -> None:  # fmt: skip
    """Predict every row of SOURCE (a .csv, .jsonl or .npy file or object, or a glob of many) with FOLDER's model.

    With MODELFN_MODEL set (a registry reference), that version runs, with FOLDER's hooks.
    """
    from modelfn.batch.inputs import expand_inputs

    with click_errors():
        inputs = expand_inputs(source)
        if runner == "beam":
            summaries = _on_beam(folder, model_name, inputs, output, database, chunk_rows, runner_options)
        else:
            summaries = _here(folder, model_name, inputs, output, database, chunk_rows or 1024)
    for summary in summaries:
        _report(summary)


def _here(
    folder: Path, model_name: str | None, inputs: list[Any], output: str, database: str, chunk_rows: int
) -> list[dict[str, Any]]:
    """Each input in turn, in this process: one model, one database connection for them all."""
    from modelfn.adapters.process import build_servable
    from modelfn.batch.database import ResultsDatabase
    from modelfn.batch.job import BatchJob, Location
    from modelfn.contract import function_members
    from modelfn.runtime.stores import open_store

    members = function_members(folder)
    servable, settings = build_servable(folder, None if members == [""] else members, None)
    model = servable.member(model_name).model()
    destination = Location(*open_store(output))
    results = ResultsDatabase(database) if database else None
    summaries = []
    for location, name in inputs:
        info = location.store.stat(location.key)
        if info is None:
            raise click.ClickException(f"no such input: {location.uri}")
        with click.progressbar(length=info.size, label=f"{name}", show_pos=False, show_percent=True) as bar:
            seen = [0]

            def advance(rows: int, read: int) -> None:
                bar.label = f"{name}: {rows:,} rows"  # noqa: B023 (called only inside this iteration)
                bar.update(read - seen[0])  # noqa: B023
                seen[0] = read  # noqa: B023

            job = BatchJob(model, chunk_rows=chunk_rows, max_line_bytes=settings.max_body_bytes, database=results,
                           progress=advance)  # fmt: skip
            summaries.append(job.run(location, destination, name))
    return summaries


def _on_beam(
    folder: Path, model_name: str | None, inputs: list[Any], output: str, database: str, chunk_rows: int | None,
    options: tuple[str, ...],
) -> list[dict[str, Any]]:  # fmt: skip
    try:
        from modelfn.beam import pipeline
    except ImportError as exc:
        raise click.ClickException(f"--runner beam needs Apache Beam: pip install 'modelfn[beam]' ({exc})") from None
    from modelfn.offline import ModelSource
    from modelfn.settings import Settings

    settings = Settings.from_env()
    reference = os.environ.get("MODELFN_MODEL", "")
    source = (
        ModelSource.of(reference, folder=folder, member=model_name)
        if reference
        else ModelSource.of(folder, member=model_name)
    )
    return pipeline.run(
        source, inputs, output, database=database, max_line_bytes=settings.max_body_bytes,
        max_batch_size=chunk_rows, options=options,
    )  # fmt: skip


def _report(summary: dict[str, Any]) -> None:
    name = summary["input"].rsplit("/", 1)[-1]
    state = "already done (same input and version)" if summary.get("duplicate") else f"{summary.get('seconds', 0)} s"
    click.echo(
        f"{name}: {summary['rows']:,} rows, {summary['predicted']:,} predicted, {summary['failed']:,} failed; {state}"
    )
    click.echo(f"written   {summary['predictions']}")
    if summary["failed"] or summary.get("error"):
        click.echo(f"errors    {summary['errors']}" + (f" ({summary['error']})" if summary.get("error") else ""))
