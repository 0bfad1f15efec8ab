"""Commands on one function folder: check, init, digests, serve, convert."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelfn.cli._app import ENTRYPOINT_FILE, ENTRYPOINT_TARGET, cli, click_errors, compile_folder, load_pipeline

if TYPE_CHECKING:
    pass


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
def check(folder: Path) -> None:
    """Validate FOLDER's contract, load the model and run its example."""
    import orjson

    from modelfn.runtime.model import load_model, local_artifact
    from modelfn.settings import Settings
    from modelfn.tooling.init import empty_doc_fields

    with click_errors():
        contract = compile_folder(folder)
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
            model = load_pipeline(folder, contract, settings)
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
        if contract.monitoring.reference is not None:
            from modelfn.tooling.monitor import check_reference

            click.echo(check_reference(folder, model))
        if contract.hooks.javascript is not None:
            from modelfn.tooling.js_hooks import compare_hooks

            agreement = compare_hooks(folder, contract, model)
            click.echo(agreement.line(str(contract.hooks.javascript)))
            if agreement.disagreements:
                found = "\n  ".join(agreement.disagreements[:10])
                raise click.ClickException(f"the JavaScript hooks disagree:\n  {found}")
    click.echo("ok")


@cli.command()
@click.argument("artifact", type=click.Path(exists=True, path_type=Path))
@click.option("--name", required=True, help="The model's name in URLs (^[a-z][a-z0-9_-]{0,62}$).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="The new folder [default: functions/NAME].")
@click.option("--version", "model_version", default="1", show_default=True, help="The contract's version.")
@click.option("--description", default="", help="What the model does (the contract's docs.description).")
@click.option("--trust", "trusted", multiple=True, help="A skops type you reviewed and trust (repeatable).")
@click.option(
    "--example", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
    help="A JSON row the model takes (a pipeline fitted on a DataFrame): types its columns, becomes the example.",
)  # fmt: skip
def init(
    artifact: Path,
    name: str,
    out: Path | None,
    model_version: str,
    description: str,
    trusted: tuple[str, ...],
    example: Path | None,
) -> None:
    """Write a function folder for ARTIFACT: contract, main.py, hooks.py and an example, read from the file.

    An ONNX model's external-data files are copied beside it and pinned in ``artifact.files``. A
    scikit-learn pipeline fitted on a DataFrame gets one input per column and no hooks (``table:``).
    ARTIFACT may also be the folder ONNX Runtime GenAI's model builder writes: a generative model.
    """
    from modelfn.contract import load_contract
    from modelfn.tooling.init import init_function

    with click_errors():
        folder = init_function(artifact, name, out or Path("functions") / name, version=model_version,
                               description=description, trusted=trusted, example=example)  # fmt: skip
        files = [load_contract(folder).verified_artifact().file_name, *load_contract(folder).verified_artifact().files]
    written = "main.py, hooks.py" if (folder / "hooks.py").exists() else "main.py"
    click.echo(f"wrote     {folder}: modelfn.yaml, {written} and {', '.join(files)}")
    empty = "each tensor's description" if description else "the docs block and each tensor's description"
    contract = load_contract(folder)
    if contract.table is not None and example is None:  # an ONNX table: its types were read, its example is blank
        empty += " and the example (a real row: zeros and empty strings are rarely one)"
    click.echo(f"next      fill in {empty}, then: modelfn check {folder}")


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--model", "model_file", default=None,
    help="The model file in FOLDER [default: the contract's artifact, or model.onnx without a contract].",
)  # fmt: skip
def digests(folder: Path, model_file: str | None) -> None:
    """Print the artifact block that pins FOLDER's ONNX model and each external-data file it names."""
    from modelfn.contract import CONTRACT_FILE
    from modelfn.tooling.pins import contract_artifact_name, pins

    with click_errors():
        if model_file is None:
            model_file = contract_artifact_name(folder / CONTRACT_FILE) or "model.onnx"
        if not (folder / model_file).is_file():
            raise click.ClickException(f"{folder / model_file}: no such file; name the model file with --model")
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
@click.option(
    "--grpc", "grpc", is_flag=True,
    help="Serve the Open Inference Protocol over gRPC (HTTP/2 cleartext) on the port instead of HTTP.",
)  # fmt: skip
def serve(folder: Path, port: int, host: str, browser: bool, grpc: bool) -> None:
    """Serve FOLDER locally under functions-framework (gunicorn), as in the cloud; or over gRPC."""
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
    with click_errors():
        contracts = [compile_folder(each) for each in folders]  # fail here, not on the first request
    served = ", ".join(f"{c.name} v{c.version}" for c in contracts)
    if browser:
        from modelfn.tooling.web_bundle import build_web

        with click_errors():
            web = build_web(folder, folder / ".modelfn" / "web")
        os.environ["MODELFN_BROWSER_BUNDLE"] = web.output
        click.echo(f"browser   {web.output}: the page can also run {served} in the browser", err=True)
    if grpc and browser:
        raise click.ClickException("--browser serves a web page: it needs HTTP, not --grpc")
    # functions-framework's app under modelfn's gunicorn settings (graceful SIGTERM, see modelfn.adapters.server),
    # or the gRPC server of the same function (modelfn.adapters.grpc_oip.server).
    server = "modelfn.adapters.grpc_oip.server" if grpc else "modelfn.adapters.server"
    click.echo(f"serving {served} on {'grpc' if grpc else 'http'}://{host}:{port}", err=True)
    argv = [sys.executable, "-m", server, "--target", ENTRYPOINT_TARGET,
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
@click.option(
    "--validation", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
    help="Data to verify on instead of the contract's: an .npz, or a table's CSV (with a header) or JSON Lines.",
)  # fmt: skip
def convert(
    folder: Path, out: Path, version: str | None, quantize: str | None, optimize: bool, max_abs_diff: float | None,
    min_agreement: float | None, validation: Path | None,
) -> None:  # fmt: skip
    """Convert FOLDER's scikit-learn or Keras model to a verified ONNX function in OUT."""
    from modelfn.tooling.convert import DEFAULTS, Thresholds
    from modelfn.tooling.convert import convert as run

    defaults = DEFAULTS[quantize]
    limits = Thresholds(
        defaults.max_abs_diff if max_abs_diff is None else max_abs_diff,
        defaults.min_agreement if min_agreement is None else min_agreement,
    )
    with click_errors():
        try:
            report = run(folder, out, version=version, quantize=quantize, optimize=optimize, thresholds=limits,
                         validation=validation)  # fmt: skip
        except (ValueError, TypeError, RuntimeError, ImportError, OSError) as exc:
            # A converter's own failure on a model it cannot handle: the cause, not a traceback.
            raise click.ClickException(
                f"converting {folder} failed: {type(exc).__name__}: {str(exc)[:500]}; if the model is not a plain "
                "scikit-learn estimator or pipeline (over one numeric matrix, or a table's columns), a Keras or a "
                "PyTorch model, serve it as it is"
            ) from None
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
