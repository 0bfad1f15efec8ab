"""Commands that build and ship: build (every target), site, render."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelfn.cli._app import cli, click_errors

if TYPE_CHECKING:
    pass


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--target", type=click.Choice(["gcf", "cloudrun", "lambda", "lambda-image", "dataflow", "web", "edge"]),
    required=True,
    help="gcf and lambda: a zip; cloudrun and lambda-image: a container build context; dataflow: a flex "
    "template's image context for batch jobs on Beam; web: a static site that runs the model in the browser; "
    "edge: a folder for a device with Python, onnxruntime and numpy.",
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
@click.option(
    "--target", "targets", multiple=True, type=click.Choice(["gcp", "aws", "kubernetes"]),
    help="Only these targets' files (cloudbuild.yaml always). Default: all three. kubernetes: a Knative "
    "Service and a KServe InferenceService per function in infra/kubernetes/.",
)  # fmt: skip
@click.option(
    "--root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("."), show_default=True,
    help="The project: functions/ is read, infra/, serverless.yml and cloudbuild.yaml are written.",
)  # fmt: skip
@click.option("--check", is_flag=True, help="Write nothing; fail when a checked-in file differs from the output.")
def render(targets: tuple[str, ...], root: Path, check: bool) -> None:
    """Generate the Terraform variables, serverless.yml, cloudbuild.yaml and Kubernetes manifests from the contracts."""
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
