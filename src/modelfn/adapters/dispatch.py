"""The request path every adapter calls: a request in, a response out, errors rendered, never raising.

It sits above the protocols it routes to (:func:`modelfn.protocols.router`), as the adapters do:
the protocols import :mod:`modelfn.function` for what they serve, and nothing below imports this.
Here a request is counted and logged, its body inflated, its credentials checked and a copy sent to
a shadow version when the alias has one.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from modelfn.errors import ModelFault, ModelfnError
from modelfn.observability.metrics import CONTEXT, RECORDER, RequestContext

if TYPE_CHECKING:
    from modelfn.function import Servable
    from modelfn.http import Request, Response
    from modelfn.routing import Router

log = logging.getLogger("modelfn")


def handle_request(
    servable: Servable, request: Request, *, deadline_s: float | None = None, route: str | None = None
) -> Response:
    """Route a request and render any error as ``{"error": ...}``; never raises.

    Every request is counted (:mod:`modelfn.observability.metrics`) and logged in one line
    (:mod:`modelfn.observability.logs`) with the route, model and version it reached. ``deadline_s``:
    the seconds the client still waits, where its protocol says (gRPC); ``route``: the name to count
    and log it under instead of the HTTP route it was translated to (a gRPC method).
    """
    context = RequestContext(random.random(), request)
    if deadline_s is not None:
        context.deadline = time.monotonic() + deadline_s
    response, seconds = _timed_dispatch(servable, request, context)
    route = route or context.route or "unmatched"
    RECORDER.request(context.model, context.version, route, response.status, seconds)
    version_header = _request_path().version_header
    if context.version and version_header not in response.headers:  # every answer names its version
        response = response._replace(headers={**response.headers, version_header: context.version})
    if context.chosen and not context.cold:  # only what the split sent; a load's wait is not the version's
        size = len(request.body)
        RECORDER.split_request(context.model, context.version, response.status, seconds, size)
        if context.watch is not None:
            context.watch.observe(context.version, response.status, seconds, size)
    if context.shadow and response.status == 200 and response.stream is None:
        _mirror(servable, request, context, response)
    settings = servable.settings
    if settings.payload_log and context.model and random.random() < settings.payload_sample:
        _record_payload(servable, request, response, context, seconds)
    _log(servable, request, response.status, seconds, route, context)
    return response


class _RequestPath(NamedTuple):
    router: Router
    error_response: Callable[[ModelfnError], Response]
    version_header: str


_REQUEST_PATH: _RequestPath | None = None


def _request_path() -> _RequestPath:
    """The routes and the rendering of answers, imported by the first request rather than at start
    (they import orjson and the protocols), and then looked up once, not in every request."""
    global _REQUEST_PATH
    if _REQUEST_PATH is None:
        from modelfn.http import VERSION_HEADER, error_response
        from modelfn.protocols import router

        _REQUEST_PATH = _RequestPath(router(), error_response, VERSION_HEADER)
    return _REQUEST_PATH


def _record_payload(servable: Servable, request: Request, response: Response, context: Any, seconds: float) -> None:
    """A copy of the request and its answer for the payload log (:mod:`modelfn.monitoring.payload`); never raises."""
    try:
        from modelfn.monitoring.payload import record_request

        fields = servable.member(context.model).contract().monitoring.payload
        record_request(servable.settings, request, response, context, seconds, fields)
    except Exception:  # monitoring never fails a request
        log.exception("payload log: the request could not be recorded")


def refused(servable: Servable, request: Request, error: ModelfnError, seconds: float, route: str) -> Response:
    """The answer to a request its adapter refused before it could be routed (a gRPC message that
    translates to no valid request), counted and logged as :func:`handle_request` does."""
    from modelfn.http import error_response

    response = error_response(error)
    RECORDER.request("", "", route, response.status, seconds)
    _log(servable, request, response.status, seconds, route, RequestContext(0.0, request))
    return response


def _log(servable: Servable, request: Request, status: int, seconds: float, route: str, context: Any) -> None:
    settings = servable.settings
    if settings.request_log:
        from modelfn.observability.logs import log_request

        log_request(request.method, request.path, status, seconds, route=route, model=context.model,
                    version=context.version, headers=request.headers, project=settings.trace_project)  # fmt: skip


#: Shadow copies waiting or running at once per process; beyond them a copy is skipped (counted).
MAX_SHADOW_COPIES = 16
#: Threads that run the copies: a few long-lived ones, not a thread per copy (starting one costs
#: more than a small model's inference), and few, so copies never take every core from requests.
SHADOW_WORKERS = 2
_SHADOW_SLOTS = threading.BoundedSemaphore(MAX_SHADOW_COPIES)
_shadow_pool: Any = None
_shadow_pool_lock = threading.Lock()


def _shadow_executor() -> Any:
    """The process's pool of shadow workers, made on the first copy (most functions never have a shadow)."""
    global _shadow_pool
    with _shadow_pool_lock:
        if _shadow_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _shadow_pool = ThreadPoolExecutor(max_workers=SHADOW_WORKERS, thread_name_prefix="modelfn-shadow")
        return _shadow_pool


def _mirror(servable: Servable, request: Request, served: Any, response: Response) -> None:
    """Send a copy of ``request`` to the shadow version in the background; compare, count, never return it."""
    model, shadow = served.model, served.shadow
    if not _SHADOW_SLOTS.acquire(blocking=False):
        RECORDER.count("shadow", (model, shadow, "skipped"))
        return

    def replay() -> None:
        try:
            context = RequestContext(served.draw, request)
            context.pinned = shadow
            copy, seconds = _timed_dispatch(servable, request, context)
            RECORDER.request(model, shadow, context.route or "unmatched", copy.status, seconds)
            agreed = copy.status == response.status and _comparable(copy.body) == _comparable(response.body)
            RECORDER.count("shadow", (model, shadow, "true" if agreed else "false"))
        except Exception:
            log.exception("shadow copy to %s v%s failed", model, shadow)
        finally:
            _SHADOW_SLOTS.release()

    try:
        _shadow_executor().submit(replay)
    except RuntimeError:  # the interpreter is shutting down: no new copies
        _SHADOW_SLOTS.release()


def _timed_dispatch(servable: Servable, request: Request, context: Any) -> tuple[Response, float]:
    """Answer ``request`` with ``context`` as the current request's context; the answer and its seconds."""
    token = CONTEXT.set(context)
    started = time.perf_counter()
    try:
        response = _dispatch(servable, request)
    finally:
        CONTEXT.reset(token)
    return response, time.perf_counter() - started


def _comparable(body: bytes) -> Any:
    """An answer without the fields that name its version, for comparing two versions' answers."""
    import orjson

    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k not in ("model_version", "version")}
    return value


def _dispatch(servable: Servable, request: Request) -> Response:
    path = _request_path()
    try:
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if request.body and encoding not in ("", "identity"):
            from modelfn.inflate import inflate

            request = request._replace(body=inflate(request.body, encoding, servable.settings.max_body_bytes))
        return path.router.dispatch(servable, request, _guard(servable))
    except ModelfnError as exc:
        return path.error_response(exc)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path[:200])
        return path.error_response(ModelFault("unhandled error"))


def _guard(servable: Servable) -> Any:
    """The credentials check: API keys (``MODELFN_API_KEYS_FILE``, see :mod:`modelfn.security.api_keys`) and/or Google
    ID tokens (``MODELFN_ID_TOKEN_AUDIENCE``, see :mod:`modelfn.security.id_tokens`); None when neither is set."""
    settings = servable.settings
    if not settings.api_keys_file and not settings.id_token_audience:
        return None
    from modelfn.security.api_keys import keyring, presented_key

    keys = keyring(settings.api_keys_file) if settings.api_keys_file else None
    tokens = None
    if settings.id_token_audience:
        from modelfn.security.id_tokens import id_token_verifier, looks_like_jwt

        tokens = id_token_verifier(settings.id_token_audience, settings.id_token_emails, settings.id_token_certs_url)

    def guard(request: Request, name: str | None, for_model: bool) -> None:
        if tokens is not None:
            presented = presented_key(request.headers) or ""
            if keys is None or looks_like_jwt(presented):
                tokens.verify(presented)  # a service identity: every model of the function
                return
        if name is None and for_model:
            # A model route that names none (POST /predict) runs the function's default model.
            try:
                name = servable.member(None).contract().name
            except ModelfnError:
                name = ""  # a several-model function has none: the route answers 404 after the key check
        keys.check(request.headers, name)  # type: ignore[union-attr]  # set whenever tokens is None

    return guard
