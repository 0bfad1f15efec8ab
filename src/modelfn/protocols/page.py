"""The web page for people: ``GET /`` (and its script and style), and ``GET /models``, the model cards.

The page is static: three files shipped in ``modelfn/page/``, no build step, no external assets,
so it works offline and on a function with no internet egress. It reads ``/models`` and shows
each model with the widget its contract asks for (``page.widget``): a drawing pad, a chat, or
the example request in an editable box. Everything it shows is written with ``textContent``,
never parsed as HTML, and a strict Content-Security-Policy allows only this origin's script,
style and API. When the function needs credentials, the page asks the visitor for an API key
and sends it with each call; the page itself carries nothing secret, so it is served openly
(``MODELFN_PAGE=0`` turns it off).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfn.errors import NotFound
from modelfn.http import Request, Response, json_response

if TYPE_CHECKING:
    from modelfn.function import Servable

_FOLDER = Path(__file__).resolve().parent.parent / "page"
#: The only files served, by path: no part of a request becomes a file name.
_ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/page.css": ("page.css", "text/css; charset=utf-8"),
}
#: With a browser bundle, the page may also compile ONNX Runtime Web's WebAssembly (nothing else changes).
WASM_POLICY = ("script-src 'self';", "script-src 'self' 'wasm-unsafe-eval';")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_CACHE: dict[str, bytes] = {}


def asset(function: Servable, request: Request) -> Response:
    """``GET /``, ``/page.js``, ``/page.css``."""
    if not function.settings.page:
        raise NotFound("the web page is off (MODELFN_PAGE=0)")
    path = request.path.rstrip("/") or "/"
    file_name, media_type = _ASSETS[path]
    body = _CACHE.get(file_name)
    if body is None:
        body = _CACHE[file_name] = (_FOLDER / file_name).read_bytes()
    headers = {"Content-Type": media_type, **SECURITY_HEADERS}
    if function.settings.browser_bundle:
        from modelfn.protocols.browser import bundle

        if bundle(function.settings) is not None:
            headers["Content-Security-Policy"] = headers["Content-Security-Policy"].replace(*WASM_POLICY)
    return Response(200, body, headers)


def model_cards(function: Servable, request: Request) -> Response:
    """``GET /models``: each model's name, version, documentation, example and page widget."""
    cards = []
    for name in function.catalog():
        contract = function.member(name).contract()
        cards.append(card(contract))
        if function.settings.browser_bundle:
            from modelfn.protocols.browser import entry

            found = entry(function.settings, contract.name, contract.version)
            if found is not None:
                cards[-1]["browser"] = found
    return json_response({"models": cards})


def card(contract: Any) -> dict[str, Any]:
    docs = contract.docs
    return {
        "name": contract.name,
        "version": contract.version,
        "description": docs.description,
        "metrics": docs.metrics,
        "limitations": docs.limitations,
        "example": contract.example,
        "page": {field: getattr(contract.page, field) for field in contract.page.__struct_fields__},
        # A generative model's chat streams from /openai/v1/chat/completions.
        "generative": contract.framework == "genai",
        # What the page may upload (a photo beside the drawing pad): the types and the size limit.
        "uploads": None
        if contract.uploads is None
        else {
            "media_types": contract.uploads.media_types,
            "max_bytes": contract.uploads.max_bytes,
            "field": contract.uploads.field,
        },
    }
