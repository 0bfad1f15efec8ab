"""``GET /browser/{asset}``: the web bundle with which the page runs models in the visitor's browser.

``MODELFN_BROWSER_BUNDLE`` names a bundle built by ``modelfn build FOLDER --target web`` (the
folder with ``site.json``). A model of the function whose name *and version* the bundle holds
gets a ``browser`` entry in its card (``GET /models``), and the page offers a switch: answer on
the function, in the browser, or both side by side. Only the files ``site.json`` lists are
served, by a lookup in that list (no part of a URL becomes a path), with their media types and
caching; the gzip copy where the browser accepts it. The bundle is read once; a bundle that
cannot be read, or that does not hold what ``site.json`` lists, is not offered at all (and said
so in the log), so the page then answers on the function only.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from modelfn.errors import NotFound
from modelfn.http import Request, Response
from modelfn.webfiles import manifest_files, reply

if TYPE_CHECKING:
    from modelfn.function import Servable
    from modelfn.settings import Settings

log = logging.getLogger("modelfn")


class Bundle(NamedTuple):
    root: Path
    files: dict[str, dict[str, Any]]
    #: (name, version) -> the card's ``browser`` entry (its paths relative to ``/browser/``).
    models: dict[tuple[str, str], dict[str, Any]]


_LOCK = threading.Lock()
_BUNDLES: dict[str, Bundle | None] = {}


def bundle(settings: Settings) -> Bundle | None:
    """The configured bundle, read on first use; ``None`` when there is none or it is broken."""
    where = settings.browser_bundle
    if not where:
        return None
    with _LOCK:
        if where not in _BUNDLES:
            _BUNDLES[where] = _read(Path(where))
        return _BUNDLES[where]


def _read(root: Path) -> Bundle | None:
    try:
        files = manifest_files(root)
        missing = [path for path in files if not (root / "site" / path).is_file()]
        if missing:
            raise ValueError(f"site.json lists files that are not there: {missing[:5]}")
        cards = json.loads((root / "site" / "models.json").read_text())["models"]
        # The entries' paths are relative to the bundle, which the page finds at /browser/.
        models = {(card["name"], card["version"]): card["browser"] for card in cards}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("MODELFN_BROWSER_BUNDLE=%s cannot be served, so the page answers on the function only: %s", root, exc)
        return None
    return Bundle(root, files, models)


def entry(settings: Settings, name: str, version: str) -> dict[str, Any] | None:
    """The card's ``browser`` entry for this model and version, if the bundle holds exactly them."""
    found = bundle(settings)
    return None if found is None else found.models.get((name, version))


def asset(function: Servable, request: Request, asset: str) -> Response:
    """``GET /browser/{asset}``: one file of the bundle."""
    found = bundle(function.settings) if function.settings.page else None
    file = None if found is None else found.files.get(asset)
    if found is None or file is None:
        raise NotFound("no such file in the browser bundle (MODELFN_BROWSER_BUNDLE)")
    answer = reply(found.root, asset, file, if_none_match=request.headers.get("if-none-match", ""),
                   accept_encoding=request.headers.get("accept-encoding", ""))  # fmt: skip
    headers = {**answer.headers, "X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy": "same-origin"}
    if answer.body is None:
        return Response(answer.status, b"", headers)
    try:
        body = answer.body.read_bytes()
    except OSError as exc:
        log.error("browser bundle file %s cannot be read: %s", answer.body, exc)
        raise NotFound("no such file in the browser bundle (MODELFN_BROWSER_BUNDLE)") from exc
    return Response(answer.status, body, headers)
