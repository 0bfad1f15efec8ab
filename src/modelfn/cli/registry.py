"""Commands on the model registry: push, versions, promote, rollback, traffic, compare."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelfn.cli._app import cli, click_errors

if TYPE_CHECKING:
    pass


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

    with click_errors(), laid_out_folder(folder) as (pushed, laid_out):
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

    with click_errors():
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

    with click_errors():
        record = Registry.open(registry).promote(name, version, alias)
    click.echo(f"{name}@{alias} -> v{record.version} (previous: {', '.join(record.history) or 'none'})")


@cli.command()
@click.argument("name")
@click.option("--alias", required=True, help="Alias to move back.")
@REGISTRY
def rollback(name: str, alias: str, registry: str) -> None:
    """Point NAME@ALIAS back at its previous version."""
    from modelfn.registry import Registry

    with click_errors():
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
    with click_errors():
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

    with click_errors():
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
        with click_errors():
            remaining = opened.take_out(name, alias, canary, policy).traffic
        click.echo(f"rolled back canary v{canary}: {reason}; its share goes to v{record.version}")
        if remaining is None:
            break
        policy = remaining
    if condemned:
        sys.exit(3)
