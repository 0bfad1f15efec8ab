"""``modelfn keys``: the API keys a function checks (add, list, revoke)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelfn.cli._app import cli, click_errors

if TYPE_CHECKING:
    pass


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

    with click_errors():
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

    with click_errors():
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

    with click_errors():
        text = keys_file.read_text() if keys_file.exists() else ""
        if key_id not in parse_keys(text, str(keys_file)):
            raise click.ClickException(f"no key {key_id!r} in {keys_file}")
        kept = [line for line in text.splitlines() if line.split("#", 1)[0].split()[:1] != [key_id]]
        write_atomically(keys_file, ("\n".join(kept) + "\n").encode())
    click.echo(f"revoked   {key_id}")
