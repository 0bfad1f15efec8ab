"""``modelfn monitor``: a model's drift reference, and reports of drift over every instance's summaries."""

from __future__ import annotations

import json
from pathlib import Path

import click

from modelfn.cli._app import cli, click_errors


@cli.group()
def monitor() -> None:
    """Drift of what a model is asked against its reference (MODELFN_MONITOR_STORE)."""


@monitor.command("reference")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Rows to compute it on: request bodies (.jsonl), a table's rows (.csv, .jsonl) or input "
                   "tensors (.npz). Default: the contract's validation set.")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write it [default: FOLDER/reference.json].")  # fmt: skip
def monitor_reference(folder: Path, data: Path | None, out: Path | None) -> None:
    """Write FOLDER's drift reference: its model's features on the validation set, binned."""
    from modelfn._files import write_atomically
    from modelfn.contract import load_contract
    from modelfn.tooling.monitor import compute_reference

    with click_errors():
        reference = compute_reference(folder, data)
        contract = load_contract(folder)
    out = out or folder / "reference.json"
    write_atomically(out, (json.dumps(reference.data, indent=1) + "\n").encode())
    kinds = f"{len(reference.numeric_names)} numeric and {len(reference.categorical_names)} categorical features"
    click.echo(f"wrote     {out}: {kinds} of {reference.data['rows']:,} rows")
    named = contract.monitoring.reference
    if named is None or (folder / named).resolve() != out.resolve():
        click.echo(f"next      add to {folder / 'modelfn.yaml'}:  monitoring: {{reference: {out.name}}}", err=True)


@monitor.command("report")
@click.argument("name")
@click.option("--store", "store_uri", envvar="MODELFN_MONITOR_STORE", required=True,
              help="The functions' MODELFN_MONITOR_STORE (gs://, s3:// or a folder).")  # fmt: skip
@click.option("--version", default=None, help="The model version [default: the one summarized last].")
@click.option("--since", default=None, help="Only summaries since: a duration back from now (30m, 12h, 7d) or an "
              "ISO time [default: all].")  # fmt: skip
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write an HTML report, with a chart per drifted feature.")  # fmt: skip
@click.option("--all", "every", is_flag=True, help="List every feature, not only the drifted ones.")
def monitor_report(name: str, store_uri: str, version: str | None, since: str | None, html_path: Path | None,
                   every: bool) -> None:  # fmt: skip
    """Merge every instance's summaries of model NAME and test them against its reference; exit 1 on drift."""
    from modelfn.tooling.monitor import report, since_seconds, stored_reference, table

    with click_errors():
        reference = stored_reference(store_uri, name, version)
        result = report(reference, store_uri, since_seconds(since))
    click.echo(table(result, every=every))
    if html_path is not None:
        from modelfn._files import write_atomically
        from modelfn.tooling.monitor_html import html_report

        write_atomically(html_path, html_report(result, reference).encode())
        click.echo(f"wrote     {html_path}", err=True)
    if result.verdict.drift:
        raise SystemExit(1)
