"""A request read from a WSGI environ, and modelfn answering in front of Flask in functions-framework's app.

functions-framework routes every path of an HTTP function to one Flask view, and modelfn routes
again inside it. For modelfn, Flask's share of a request is overhead: its request and response
objects, URL map, context push and pop, signals and after-request hook cost about 90 µs of CPU a
digits request on the project's 2-CPU machine, more than all of modelfn's own path with every
check (about 50 µs; docs, "Performance"). None of it is used:
modelfn reads the request from the WSGI environ and writes its own response.

So once functions-framework has made a :func:`~modelfn.adapters.gcf.http_function` handler its
HTTP target, that handler answers at the WSGI layer, in front of Flask (:class:`WsgiFront`). The
request, the dispatch, the checks and the response are the same ones; only Flask's wrapping is gone.
The front stands aside, and every request goes through Flask as before, when:

- the app's HTTP view is not this handler (the file's target is another function, such as a
  CloudEvent function beside it);
- functions-framework's execution-id logging is on (``LOG_EXECUTION_ID``), which needs its
  per-request context around the handler;
- ``MODELFN_WSGI_FRONT=0``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from modelfn.errors import PayloadTooLarge

if TYPE_CHECKING:
    from modelfn.http import Request, Response

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class EnvironHeaders(Mapping[str, str]):
    """A WSGI request's headers, looked up case-insensitively in its environ: one dict lookup each
    (werkzeug's own view goes through several calls a lookup, and a request makes a few)."""

    __slots__ = ("_environ",)

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ

    def __getitem__(self, name: str) -> str:
        value: str | None = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def get(self, name: str, default: Any = None) -> Any:  # Mapping's own goes through an exception
        key = name.upper().replace("-", "_")
        value = self._environ.get(key if key in _UNPREFIXED else "HTTP_" + key)
        return value if isinstance(value, str) else default

    def __iter__(self) -> Iterator[str]:
        for key in self._environ:
            if key.startswith("HTTP_"):
                yield key[5:].replace("_", "-").title()
            elif key in _UNPREFIXED:
                yield key.replace("_", "-").title()

    def __len__(self) -> int:
        return sum(1 for _ in self)


#: The two headers WSGI keeps without the HTTP_ prefix.
_UNPREFIXED = frozenset(("CONTENT_TYPE", "CONTENT_LENGTH"))


def read_body(environ: Mapping[str, Any], limit: int, stream: Any = None) -> bytes:
    """The request body, at most ``limit`` bytes; a declared or actual larger body is a 413.

    ``stream``: the body's stream where the caller made one already (werkzeug's ``request.stream``,
    which functions-framework's after-request hook reads to the end again).
    """
    declared = environ.get("CONTENT_LENGTH")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {int(declared)} bytes; the limit is {limit}")
    if stream is None and environ.get("wsgi.input_terminated"):
        # The server ends the stream at the body's end, chunked or not (gunicorn, werkzeug's server):
        # read it directly, as werkzeug's request.stream would, without building its wrapper each time.
        stream = environ["wsgi.input"]
    elif stream is None:  # bounded by Content-Length, as werkzeug bounds it (none: an empty body)
        from werkzeug.wsgi import get_input_stream

        stream = get_input_stream(environ)  # type: ignore[arg-type]  # it reads the environ only
    body: bytes = stream.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
    return body


def request_from_environ(environ: Mapping[str, Any], limit: int, stream: Any = None) -> Request:
    """The request as modelfn sees it; the path decoded as werkzeug decodes ``PATH_INFO``."""
    path = environ.get("PATH_INFO") or ""
    path = "/" + path.encode("latin-1").decode("utf-8", "replace").lstrip("/")
    method = environ.get("REQUEST_METHOD", "GET").upper()
    from modelfn.http import Request  # here, not at import: it brings orjson, which the first request needs anyway

    return Request(method, path, read_body(environ, limit, stream), EnvironHeaders(environ))


class WsgiFront:
    """functions-framework's WSGI app with ``answer``'s requests answered before Flask sees them.

    ``answer`` turns a request into a response with every check; ``serves`` says, on the first
    request, whether the front should answer at all (otherwise ``inner``, the app, answers them all).
    """

    def __init__(self, inner: WsgiApp, answer: Callable[[Request], Response], limit: int,
                 serves: Callable[[], bool]) -> None:  # fmt: skip
        self._inner = inner
        self._answer = answer
        self._limit = limit
        self._serves = serves
        self._decided: bool | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self._decided is None:
            with self._lock:
                if self._decided is None:
                    self._decided = self._serves()
        if not self._decided:
            return self._inner(environ, start_response)
        try:
            request = request_from_environ(environ, self._limit)
        except PayloadTooLarge as exc:
            from modelfn.http import Response, error_response

            # The rest of the upload stays unread: the connection is closed rather than drained.
            refused = error_response(exc)
            return _write(Response(refused.status, refused.body, {**refused.headers, "Connection": "close"}),
                          environ, start_response)  # fmt: skip
        return _write(self._answer(request), environ, start_response)


def _write(response: Response, environ: Mapping[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    headers = list(response.headers.items())
    head_only = environ.get("REQUEST_METHOD") == "HEAD"
    if response.stream is not None:
        start_response(_status_line(response.status), headers)
        if head_only:
            _close(response.stream)
            return []
        return response.stream  # the server writes each chunk as it comes and closes it at the end
    headers.append(("Content-Length", str(len(response.body))))
    start_response(_status_line(response.status), headers)
    return [] if head_only else [response.body]


def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _status_line(status: int) -> str:
    line = _STATUS_LINES.get(status)
    if line is None:
        from http import HTTPStatus

        try:
            line = f"{status} {HTTPStatus(status).phrase}"
        except ValueError:
            line = f"{status} Unknown"
        _STATUS_LINES[status] = line
    return line


_STATUS_LINES: dict[int, str] = {200: "200 OK"}


def front_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether functions-framework's own per-request logging context is off (``LOG_EXECUTION_ID``)."""
    return environ.get("LOG_EXECUTION_ID") not in ("y", "yes", "t", "true", "on", "1")


def install_front(handler: Callable[..., Any], answer: Callable[[Request], Response], limit: int) -> bool:
    """Put a :class:`WsgiFront` before the functions-framework app now being made, if one is.

    Called while functions-framework runs the function's source inside its new app's context; the
    front answers only once that app's HTTP view turns out to be ``handler``. Returns whether a front
    was installed (no app is being made when the handler is built outside functions-framework).
    """
    import sys

    flask = sys.modules.get("flask")
    if flask is None or not flask.has_app_context() or not front_enabled():
        return False
    app = flask.current_app._get_current_object()

    def serves() -> bool:  # functions-framework registers its HTTP view, wrapped, after the source runs
        view = app.view_functions.get("run")
        while view is not None and view is not handler:
            view = getattr(view, "__wrapped__", None)
        return view is handler

    app.wsgi_app = WsgiFront(app.wsgi_app, answer, limit, serves)
    return True
