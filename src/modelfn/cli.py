"""The ``modelfn`` command line: tooling, never imported by a running function."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
def check(folder: Path) -> None:
    """Validate FOLDER's contract, load the model and run its example."""
    import orjson

    from modelfn.runtime.model import load_model, local_artifact
    from modelfn.settings import Settings
    from modelfn.tooling.init import empty_doc_fields

    with _click_errors():
        contract = _compile(folder)
        click.echo(f"contract  {folder / 'modelfn.yaml'}: {contract.name} v{contract.version} ({contract.framework})")
        empty = empty_doc_fields(contract)
        if empty:
            click.echo(f"docs      still empty: {', '.join(empty)}")
        if not contract.docs.description:
            raise click.ClickException(
                f"{folder / 'modelfn.yaml'}: field `docs.description` is empty; say what the model does"
            )
        settings = Settings.from_env()
        if contract.framework == "pipeline":
            model = _load_pipeline(folder, contract, settings)
            click.echo(f"steps     {' -> '.join(step.model for step in contract.steps)} (sibling folders)")
        else:
            model = load_model(folder, contract, settings, *local_artifact(contract, folder))
        phases = ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in model.phases.items())
        click.echo(f"loaded    every sha256 verified; {phases}")
        if contract.example is None:
            click.echo("example   none in the contract (add `example:` to have it run here)")
        else:
            result = model.predict_json(contract.example)
            option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_INDENT_2
            click.echo("example   POST /predict ->\n" + orjson.dumps(result, option=option).decode())
        if contract.hooks.javascript is not None:
            from modelfn.tooling.js_hooks import compare_hooks

            agreement = compare_hooks(folder, contract, model)
            click.echo(agreement.line(str(contract.hooks.javascript)))
            if agreement.disagreements:
                found = "\n  ".join(agreement.disagreements[:10])
                raise click.ClickException(f"the JavaScript hooks disagree:\n  {found}")
    click.echo("ok")


@cli.command()
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="The model's name in URLs (^[a-z][a-z0-9_-]{0,62}$).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="The new folder [default: functions/NAME].")
@click.option("--version", "model_version", default="1", show_default=True, help="The contract's version.")
def init(artifact: Path, name: str, out: Path | None, model_version: str) -> None:
    """Write a function folder for ARTIFACT: contract, main.py, hooks.py and an example, read from the file."""
    from modelfn.tooling.init import init_function

    with _click_errors():
        folder = init_function(artifact, name, out or Path("functions") / name, version=model_version)
    click.echo(f"wrote     {folder}: modelfn.yaml, main.py, hooks.py and {artifact.name}")
    click.echo(f"next      fill in the docs block and each tensor's description, then: modelfn check {folder}")


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", "model_file", default="model.onnx", show_default=True, help="The model file in FOLDER.")
def digests(folder: Path, model_file: str) -> None:
    """Print the artifact block that pins FOLDER's ONNX model and each external-data file it names."""
    from modelfn.tooling.pins import pins

    with _click_errors():
        main, files = pins(folder / model_file)
    click.echo(f"artifact:\n  uri: {model_file}\n  sha256: {main}")
    if files:
        click.echo("  files:")
        for name, digest in files.items():
            click.echo(f"    {name}: {digest}")


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--port", envvar="PORT", type=int, default=8080, show_default=True, help="Port to listen on.")
@click.option("--host", envvar="HOST", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--browser", is_flag=True,
    help="Also offer the models in the visitor's browser: build the web bundle (--target web) and serve it.",
)  # fmt: skip
def serve(folder: Path, port: int, host: str, browser: bool) -> None:
    """Serve FOLDER locally under functions-framework (gunicorn), as in the cloud."""
    entrypoint = folder / ENTRYPOINT_FILE
    if not entrypoint.is_file():
        raise click.ClickException(
            f"{entrypoint} is missing; create it with:\n\n"
            f"    from modelfn.adapters.gcf import http_function\n\n    {ENTRYPOINT_TARGET} = http_function(__file__)\n"
        )
    from modelfn.tooling.build import FunctionLayout

    # A one-model function has its contract at the top; a several-model one, in each sub-folder.
    folders = [folder / member for member in FunctionLayout.members(folder)]
    if not folders:
        raise click.ClickException(f"no modelfn.yaml in {folder} or its sub-folders")
    with _click_errors():
        contracts = [_compile(each) for each in folders]  # fail here, not on the first request
    served = ", ".join(f"{c.name} v{c.version}" for c in contracts)
    if browser:
        from modelfn.tooling.web_bundle import build_web

        with _click_errors():
            web = build_web(folder, folder / ".modelfn" / "web")
        os.environ["MODELFN_BROWSER_BUNDLE"] = web.output
        click.echo(f"browser   {web.output}: the page can also run {served} in the browser", err=True)
    click.echo(f"serving {served} on http://{host}:{port}", err=True)
    # functions-framework's app under modelfn's gunicorn settings (graceful SIGTERM, see modelfn.adapters.server).
    argv = [sys.executable, "-m", "modelfn.adapters.server", "--target", ENTRYPOINT_TARGET,
            "--source", str(entrypoint), "--host", host, "--port", str(port)]  # fmt: skip
    # Replace this process: signals reach gunicorn directly, as on the platforms.
    os.execv(sys.executable, argv)


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder for the ONNX function."
)
@click.option("--version", "version", default=None, help="Version of the converted contract (default: <version>-onnx).")
@click.option("--quantize", type=click.Choice(["int8"]), default=None, help="ONNX Runtime dynamic quantization.")
@click.option(
    "--optimize", is_flag=True, help="Save ONNX Runtime's offline-optimized graph (portable, extended level)."
)
@click.option(
    "--max-abs-diff", type=float, default=None, help="Largest accepted float difference (default 1e-3; 0.05 with int8)."
)
@click.option("--min-agreement", type=float, default=None, help="Smallest accepted label agreement (default 0.99).")
def convert(
    folder: Path, out: Path, version: str | None, quantize: str | None, optimize: bool, max_abs_diff: float | None,
    min_agreement: float | None,
) -> None:  # fmt: skip
    """Convert FOLDER's scikit-learn or Keras model to a verified ONNX function in OUT."""
    from modelfn.tooling.convert import DEFAULTS, Thresholds
    from modelfn.tooling.convert import convert as run

    defaults = DEFAULTS[quantize]
    limits = Thresholds(
        defaults.max_abs_diff if max_abs_diff is None else max_abs_diff,
        defaults.min_agreement if min_agreement is None else min_agreement,
    )
    with _click_errors():
        report = run(folder, out, version=version, quantize=quantize, optimize=optimize, thresholds=limits)
    source, converted = report["source"], report["converted"]
    click.echo(f"converted {folder} v{source['version']} ({source['framework']}) -> {out} v{converted['version']}")
    click.echo(f"size      {source['bytes']:,} -> {converted['bytes']:,} bytes")
    if "accuracy" in report:
        click.echo(f"accuracy  {report['accuracy']['source']} -> {report['accuracy']['converted']}")
    click.echo(f"latency   {report['latency_ms']['source']} -> {report['latency_ms']['converted']} ms (1 row, median)")
    click.echo(
        f"load      {report['load_ms']['source']} -> {report['load_ms']['converted']} ms (deserialize, median of 5)"
    )
    for name, entry in report["outputs"].items():
        click.echo(f"{name:9s} " + ", ".join(f"{k} {v:.3g}" for k, v in entry.items()))
    click.echo(f"report    {out / 'conversion-report.json'}")


REGISTRY = click.option(
    "--registry",
    envvar="MODELFN_REGISTRY",
    required=True,
    help="Registry root: gs://bucket/prefix, s3://bucket/prefix or a folder.",
)


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@REGISTRY
def push(folder: Path, registry: str) -> None:
    """Upload FOLDER's contract and artifact as an immutable version."""
    from modelfn.registry import Registry
    from modelfn.tooling.layout import laid_out_folder

    with _click_errors(), laid_out_folder(folder) as (pushed, laid_out):
        result = Registry.open(registry).push(pushed)
    if laid_out:
        click.echo("weights laid out for loading in a separate .data file (deploy.weights); both files pinned")
    state = "pushed" if result.created else "already present (identical bytes)"
    click.echo(f"{result.name} v{result.version} {state}: sha256 {result.sha256}")


@cli.command()
@click.argument("name")
@REGISTRY
def versions(name: str, registry: str) -> None:
    """List NAME's versions and the aliases pointing at them."""
    from modelfn.registry import Registry

    with _click_errors():
        opened = Registry.open(registry)
        found = opened.versions(name)
        aliases = opened.aliases(name)
    if not found:
        raise click.ClickException(f"no versions of {name!r} in {registry}")
    for version in found:
        pointing = sorted(alias for alias, target in aliases.items() if target == version)
        click.echo(f"{version}  ({', '.join(pointing)})" if pointing else version)


@cli.command()
@click.argument("name")
@click.argument("version")
@click.option("--alias", required=True, help="Alias to move, e.g. prod or canary.")
@REGISTRY
def promote(name: str, version: str, alias: str, registry: str) -> None:
    """Point NAME@ALIAS at VERSION (which must exist); the old target is kept as history."""
    from modelfn.registry import Registry

    with _click_errors():
        record = Registry.open(registry).promote(name, version, alias)
    click.echo(f"{name}@{alias} -> v{record.version} (previous: {', '.join(record.history) or 'none'})")


@cli.command()
@click.argument("name")
@click.option("--alias", required=True, help="Alias to move back.")
@REGISTRY
def rollback(name: str, alias: str, registry: str) -> None:
    """Point NAME@ALIAS back at its previous version."""
    from modelfn.registry import Registry

    with _click_errors():
        record = Registry.open(registry).rollback(name, alias)
    click.echo(f"{name}@{alias} -> v{record.version} (previous: {', '.join(record.history) or 'none'})")


@cli.command()
@click.argument("name")
@click.option("--alias", required=True, help="The alias whose traffic is shared.")
@click.option("--split", "split", required=True, help="VERSION=WEIGHT pairs adding up to 100: 3=90,4=10.")
@click.option("--sticky-header", default="", help="Keep each caller on one version by this header's value.")
@click.option("--sticky-field", default="", help="... or by this top-level field of the JSON body.")
@click.option("--shadow", default="", help="A version that gets a copy of each request; its answers are never sent.")
@click.option("--no-rollback", is_flag=True, help="Turn automatic rollback of the canaries off.")
@click.option(
    "--max-error-rate-increase",
    type=float,
    default=0.05,
    show_default=True,
    help="Roll a canary back when its 5xx rate passes the stable version's by this much.",
)
@click.option(
    "--max-p99-ratio",
    type=float,
    default=2.0,
    show_default=True,
    help="... or when its p99 latency passes this multiple of the stable version's (and 50 ms more).",
)
@click.option("--window-s", type=float, default=60.0, show_default=True, help="Over this many seconds.")
@click.option("--min-requests", type=int, default=20, show_default=True, help="With at least this many requests each.")
@REGISTRY
def traffic(
    name: str,
    alias: str,
    split: str,
    sticky_header: str,
    sticky_field: str,
    shadow: str,
    no_rollback: bool,
    max_error_rate_increase: float,
    max_p99_ratio: float,
    window_s: float,
    min_requests: int,
    registry: str,
) -> None:
    """Share NAME@ALIAS's traffic between versions: canary, A/B (sticky) and shadow."""
    from modelfn.registry import Registry, Rollback, Traffic

    try:
        weights = {v.strip(): int(w) for v, _, w in (pair.partition("=") for pair in split.split(","))}
    except ValueError:
        raise click.BadParameter("expected VERSION=WEIGHT pairs such as 3=90,4=10", param_hint="--split") from None
    rule = None if no_rollback else Rollback(window_s, min_requests, max_error_rate_increase, max_p99_ratio)
    policy = Traffic(weights, sticky_header, sticky_field, shadow, rule)
    with _click_errors():
        record = Registry.open(registry).set_traffic(name, alias, policy)
    shares = ", ".join(f"v{v} {w}%" for v, w in weights.items())
    extra = [f"sticky by {sticky_header or sticky_field}"] if sticky_header or sticky_field else []
    extra += [f"shadow v{shadow}"] if shadow else []
    extra += ["no automatic rollback"] if no_rollback else []
    click.echo(f"{name}@{alias}: {shares}" + (f" ({'; '.join(extra)})" if extra else "")
               + f"; stable v{record.version}")  # fmt: skip


@cli.command()
@click.argument("name")
@click.option("--alias", required=True, help="The alias whose versions are compared.")
@click.option("--metrics", "urls", multiple=True, required=True,
              help="A function instance's /metrics URL (repeat for each instance).")  # fmt: skip
@click.option("--api-key", envvar="MODELFN_API_KEY", default="", help="Sent as x-api-key when scraping.")
@click.option("--window", "window_s", type=click.FloatRange(min=0), default=0.0,
              help="Scrape twice, this many seconds apart, and count only what happened in between "
                   "(default: everything since each instance started).")  # fmt: skip
@click.option("--rollback", is_flag=True,
              help="Take out of the split each canary that fails the rollback rule on these figures "
                   "(the policy's thresholds, or the defaults); exit status 3 when one was taken out.")  # fmt: skip
@REGISTRY
def compare(
    name: str, alias: str, urls: tuple[str, ...], api_key: str, window_s: float, rollback: bool, registry: str
) -> None:
    """Per version of NAME@ALIAS: requests, error rate, latency percentiles and shadow agreement."""
    import time

    from modelfn.registry import Registry, Rollback
    from modelfn.tooling.compare import judge, reports, scrape, table, window_reports

    with _click_errors():
        opened = Registry.open(registry)
        record = opened.alias(name, alias)
    if record is None:
        raise click.ClickException(f"no alias {name}@{alias} in {registry}")
    roles = {record.version: "stable"}
    if record.traffic is not None:
        roles.update({v: "canary" for v in record.traffic.split if v != record.version})
        if record.traffic.shadow:
            roles[record.traffic.shadow] = "shadow"
    try:
        texts = [scrape(url, api_key) for url in urls]
        if window_s:
            time.sleep(window_s)
            later = [scrape(url, api_key) for url in urls]
    except OSError as exc:
        raise click.ClickException(f"cannot scrape the metrics: {exc}") from None
    found = window_reports(texts, later, name, roles) if window_s else reports(texts, name, roles)
    click.echo(table(found))
    if not rollback or record.traffic is None:
        return
    condemned = judge(found, record.traffic.rollback or Rollback(), record.version)
    policy = record.traffic
    for canary, reason in condemned.items():
        with _click_errors():
            policy = opened.take_out(name, alias, canary, policy).traffic
        click.echo(f"rolled back canary v{canary}: {reason}; its share goes to v{record.version}")
        if policy is None:
            break
    if condemned:
        sys.exit(3)


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

        with _click_errors():
            report = build_bundle(folder, target, out, python=python, stores=stores)
        for line in report.lines():
            click.echo(line)
        return
    thresholds = None
    if max_abs_diff is not None or min_agreement is not None:
        from modelfn.tooling.convert import DEFAULTS, Thresholds

        base = DEFAULTS["int8"]
        thresholds = Thresholds(base.max_abs_diff if max_abs_diff is None else max_abs_diff,
                                base.min_agreement if min_agreement is None else min_agreement)  # fmt: skip
    with _click_errors():
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

    with _click_errors():
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

    with _click_errors():
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


KEYS_FILE = click.option(
    "--file",
    "keys_file",
    envvar="MODELFN_API_KEYS_FILE",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The keys file the function reads (MODELFN_API_KEYS_FILE).",
)


@cli.group()
def keys() -> None:
    """API keys checked by the function (MODELFN_API_KEYS_FILE): add, list, revoke."""


@keys.command("add")
@click.argument("key_id")
@click.option("--models", required=True, help="Comma-separated model names this key may use, or * for all.")
@KEYS_FILE
def keys_add(key_id: str, models: str, keys_file: Path) -> None:
    """Create KEY_ID and print the key once; only its salted hash is stored."""
    from modelfn._files import write_atomically
    from modelfn.security.api_keys import new_key, parse_keys

    with _click_errors():
        text = keys_file.read_text() if keys_file.exists() else ""
        if key_id in parse_keys(text, str(keys_file)):
            raise click.ClickException(f"{key_id} already exists in {keys_file}; revoke it first")
        scope = ",".join(m.strip() for m in models.split(",") if m.strip())
        if not scope or " " in scope:
            raise click.ClickException("--models needs model names separated by commas, or *")
        key, salt, digest = new_key(key_id)
        keys_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(keys_file, (text + ("" if not text or text.endswith("\n") else "\n")
                                     + f"{key_id} sha256:{salt}:{digest} {scope}\n").encode())  # fmt: skip
    click.echo(key)
    click.echo(f"stored    {key_id} ({scope}) in {keys_file}; the key is not shown again", err=True)


@keys.command("list")
@KEYS_FILE
def keys_list(keys_file: Path) -> None:
    """The key ids and the models each may use (never the keys)."""
    from modelfn.security.api_keys import parse_keys

    with _click_errors():
        entries = parse_keys(keys_file.read_text(), str(keys_file)) if keys_file.exists() else {}
    for key_id, entry in sorted(entries.items()):
        click.echo(f"{key_id}  {','.join(sorted(entry.models))}")


@keys.command("revoke")
@click.argument("key_id")
@KEYS_FILE
def keys_revoke(key_id: str, keys_file: Path) -> None:
    """Remove KEY_ID; running functions stop accepting it within a second."""
    from modelfn._files import write_atomically
    from modelfn.security.api_keys import parse_keys

    with _click_errors():
        text = keys_file.read_text() if keys_file.exists() else ""
        if key_id not in parse_keys(text, str(keys_file)):
            raise click.ClickException(f"no key {key_id!r} in {keys_file}")
        kept = [line for line in text.splitlines() if line.split("#", 1)[0].split()[:1] != [key_id]]
        write_atomically(keys_file, ("\n".join(kept) + "\n").encode())
    click.echo(f"revoked   {key_id}")


@contextlib.contextmanager
def _click_errors() -> Iterator[None]:
    """Show a modelfn error as the command's error message (exit 1), never as a traceback."""
    try:
        yield
    except ModelfnError as exc:
        raise click.ClickException(exc.message) from None


def _load_pipeline(folder: Path, contract: Contract, settings: Settings) -> LoadedModel:
    """Load a pipeline as its function would: beside the sibling folders its steps name."""
    from modelfn.group import FunctionGroup

    names = [folder.name, *dict.fromkeys(step.model for step in contract.steps)]
    try:
        group = FunctionGroup(folder.parent, names, settings)
    except ValueError as exc:
        raise click.ClickException(f"{folder}: {exc}") from None
    return group.member(folder.name).model()


def _compile(folder: Path) -> Contract:
    """Validate the contract and compile it, so the function's cold start skips YAML."""
    from modelfn.contract import compile_contract, load_contract

    try:
        return compile_contract(folder)
    except OSError as exc:  # a read-only folder only loses the speed-up
        click.echo(f"note: compiled contract not written ({exc.strerror or exc}); the YAML is read instead", err=True)
        return load_contract(folder)


def main() -> None:
    cli()
