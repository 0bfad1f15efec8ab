"""A web bundle's files as its hosts serve them: the one rule ``GET /browser/`` and ``modelfn site`` share.

``site.json`` (written by ``modelfn build --target web``) lists each file with its media type,
caching, sha256 and gzip size. A file is looked up in that list by its path (no part of a URL
becomes a path); its ETag is its digest, a matching ``If-None-Match`` is a 304, and the ``gzip/``
copy goes to a browser that accepts gzip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple


class Reply(NamedTuple):
    """What to answer for one listed file: the status, its headers and the file to send (None: no body)."""

    status: int
    headers: dict[str, str]
    body: Path | None


def manifest_files(root: Path) -> dict[str, dict[str, Any]]:
    """``site.json``'s files by path; raises ``OSError``, ``ValueError`` or ``KeyError`` on a broken one."""
    manifest = json.loads((root / "site.json").read_text())
    return {entry["path"]: entry for entry in manifest["files"]}


def reply(root: Path, path: str, entry: dict[str, Any], *, if_none_match: str, accept_encoding: str) -> Reply:
    """The answer for the listed file ``path`` of the bundle at ``root``."""
    headers = {
        "Content-Type": entry["media_type"],
        "Cache-Control": entry["cache_control"],
        "ETag": f'"{entry["sha256"][:32]}"',
        "Vary": "Accept-Encoding",
    }
    if if_none_match == headers["ETag"]:
        return Reply(304, headers, None)
    if entry.get("gzip_bytes") and "gzip" in accept_encoding:
        headers["Content-Encoding"] = "gzip"
        return Reply(200, headers, root / "gzip" / path)
    return Reply(200, headers, root / "site" / path)
