"""Commands that build and ship: build (every target), site, batch, render."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelfn.cli._app import cli, click_errors

if TYPE_CHECKING:
    pass


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--target", type=click.Choice(["gcf", "cloudrun", "lambda", "lambda-image", "web", "edge"]), required=True,
    help="gcf and lambda: a zip; cloudrun and lambda-image: a container build context; web: a static site "
    "that runs the model in the browser; edge: a folder for a device with Python, onnxruntime and numpy.",
)  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("dist"), show_default=True)
@click.option("--python", "python", default=None, help="Python of the target runtime (default 3.12).")
@click.option(
    "--store", "stores", multiple=True, type=click.Choice(["gcs", "s3"]),
    help="Also bundle this object store's SDK (for MODELFN_MODEL=gs://... or s3://... set at deployment).",
)  # fmt: skip
@click.option(
    "--quantize", type=click.Choice(["int8"]), default=None,
    help="web and edge: quantize the weights to int8, verified on the contract's validation data.",
)  # fmt: skip
@click.option("--max-abs-diff", type=float, default=None, help="With --quantize: largest accepted difference (0.05).")
@click.option("--min-agreement", type=float, default=None, help="With --quantize: smallest label agreement (0.99).")
@click.option(
    "--ort-web", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="web: onnxruntime-web's folder (default: node_modules/onnxruntime-web above FOLDER or here).",
)  # fmt: skip
@click.option("--measure", is_flag=True, help="web: time the first prediction in headless Chromium.")
def build(
    folder: Path, target: str, out: Path, python: str | None, stores: tuple[str, ...], quantize: str | None,
    max_abs_diff: float | None, min_agreement: float | None, ort_web: Path | None, measure: bool,
) -> None:  # fmt: skip
    """Build FOLDER's smallest deployable for TARGET and check it against the platform's limits."""
    if target not in ("web", "edge"):
        if quantize or ort_web or measure:
            raise click.UsageError("--quantize, --ort-web and --measure are for --target web and edge")
        from modelfn.tooling.build import build as build_bundle

        with click_errors():
            report = build_bundle(folder, target, out, python=python, stores=stores)
        for line in report.lines():
            click.echo(line)
        return
    if python or stores:
        raise click.UsageError("--python and --store are for the function targets, not web and edge")
    thresholds = None
    if max_abs_diff is not None or min_agreement is not None:
        from modelfn.tooling.convert import DEFAULTS, Thresholds

        base = DEFAULTS["int8"]
        thresholds = Thresholds(base.max_abs_diff if max_abs_diff is None else max_abs_diff,
                                base.min_agreement if min_agreement is None else min_agreement)  # fmt: skip
    with click_errors():
        if target == "web":
            from modelfn.tooling.web_bundle import build_web

            web = build_web(folder, out, quantize=quantize, thresholds=thresholds, ort_web=ort_web)
            if measure:
                from modelfn.tooling.browser_timing import first_prediction

                web.first_prediction = first_prediction(Path(web.output))
            lines = web.lines()
        else:
            from modelfn.tooling.edge_bundle import build_edge

            lines = build_edge(folder, out, quantize=quantize, thresholds=thresholds).lines()
    for line in lines:
        click.echo(line)


@cli.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--port", envvar="PORT", type=int, default=8000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--isolated/--not-isolated", default=True, show_default=True,
    help="Send COOP/COEP (WebAssembly threads), as a host with custom headers does.",
)  # fmt: skip
def site(bundle: Path, port: int, host: str, isolated: bool) -> None:
    """Serve BUNDLE (what `modelfn build --target web` wrote) locally, with its hosts' media types and headers."""
    from modelfn.tooling.static_site import make_server

    if not (bundle / "site.json").is_file():
        raise click.ClickException(f"{bundle} has no site.json: build it with modelfn build FOLDER --target web")
    server = make_server(bundle, host, port, isolated=isolated)
    click.echo(f"serving   {bundle / 'site'} on http://{host}:{server.server_address[1]}/ (Ctrl-C stops)")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("source")
@click.option("--output", required=True, help="Where results go: a folder, gs://bucket/prefix or s3://bucket/prefix.")
@click.option("--database", default="", help="Also upsert one row per prediction: sqlite:///path/results.db.")
@click.option("--chunk-rows", type=click.IntRange(1, 65536), default=1024, show_default=True)
@click.option("--model", "model_name", default=None, help="The model to run in a several-model function.")
def batch(folder: Path, source: str, output: str, database: str, chunk_rows: int, model_name: str | None) -> None:
    """Predict every row of SOURCE (a .csv, .jsonl or .npy file or object) with FOLDER's model."""
    from modelfn.adapters.process import build_servable
    from modelfn.batch.database import ResultsDatabase
    from modelfn.batch.job import BatchJob, Location
    from modelfn.runtime.stores import open_store
    from modelfn.tooling.build import FunctionLayout

    with click_errors():
        source_location, name = _batch_source(source)
        members = FunctionLayout.members(folder)
        servable, settings = build_servable(folder, None if members == [""] else members, None)
        model = servable.member(model_name).model()
        info = source_location.store.stat(source_location.key)
        if info is None:
            raise click.ClickException(f"no such input: {source}")
        destination_store, destination_prefix = open_store(output)
        results = ResultsDatabase(database) if database else None
        with click.progressbar(length=info.size, label=f"{name}", show_pos=False, show_percent=True) as bar:
            seen = [0]

            def advance(rows: int, read: int) -> None:
                bar.label = f"{name}: {rows:,} rows"
                bar.update(read - seen[0])
                seen[0] = read

            job = BatchJob(
                model, chunk_rows=chunk_rows, max_line_bytes=settings.max_body_bytes, database=results, progress=advance
            )
            summary = job.run(source_location, Location(destination_store, destination_prefix), name)
    state = "already done (same input and version)" if summary.get("duplicate") else f"{summary.get('seconds', 0)} s"
    click.echo(
        f"rows      {summary['rows']:,}: {summary['predicted']:,} predicted, {summary['failed']:,} failed; {state}"
    )
    click.echo(f"written   {summary['predictions']}")
    if summary["failed"] or summary.get("error"):
        click.echo(f"errors    {summary['errors']}" + (f" ({summary['error']})" if summary.get("error") else ""))


def _batch_source(source: str) -> tuple[Any, str]:
    """The input object and the name its results take: a local file, or gs:// and s3:// objects."""
    from modelfn.batch.job import Location
    from modelfn.runtime.stores import open_store

    if "://" in source and not source.startswith("file://"):
        store, key = open_store(source)
        if not key:
            raise click.ClickException(f"{source} names a bucket, not an object")
        return Location(store, key), key.rsplit("/", 1)[-1]
    path = Path(source.removeprefix("file://")).resolve()
    if not path.is_file():
        raise click.ClickException(f"no such input file: {source}")
    store, _ = open_store(str(path.parent))
    return Location(store, path.name), path.name


@cli.command()
@click.option(
    "--target", "targets", multiple=True, type=click.Choice(["gcp", "aws"]),
    help="Only this cloud's files (cloudbuild.yaml always). Default: both.",
)  # fmt: skip
@click.option(
    "--root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("."), show_default=True,
    help="The project: functions/ is read, infra/, serverless.yml and cloudbuild.yaml are written.",
)  # fmt: skip
@click.option("--check", is_flag=True, help="Write nothing; fail when a checked-in file differs from the output.")
def render(targets: tuple[str, ...], root: Path, check: bool) -> None:
    """Generate the Terraform variables, serverless.yml and cloudbuild.yaml from the contracts."""
    from modelfn.tooling import render as rendering

    with click_errors():
        files = rendering.render(root, targets or rendering.TARGETS)
    if check:
        stale = rendering.drifted(root, files)
        if stale:
            raise click.ClickException(f"out of date, run `modelfn render`: {', '.join(stale)}")
        click.echo(f"up to date: {', '.join(files)}")
        return
    changed = rendering.write(root, files)
    for relative in files:
        click.echo(f"{'wrote' if relative in changed else 'same '}  {relative}")
