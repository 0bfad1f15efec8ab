"""functions-framework (Cloud Functions gen2, Cloud Run, local) HTTP adapter.

A function folder's ``main.py`` is three lines::

    from modelfn.adapters.gcf import http_function

    handle = http_function(__file__)

and is deployed with entry point ``handle``. Building the handler reads the
``MODELFN_*`` settings and nothing else: no file, no model, no numpy.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from modelfn.adapters.dispatch import handle_request
from modelfn.adapters.process import build_servable
from modelfn.adapters.wsgi import install_front, request_from_environ
from modelfn.errors import ModelfnError, PayloadTooLarge
from modelfn.function import Servable
from modelfn.settings import Settings

if TYPE_CHECKING:
    from modelfn.http import Request

FlaskResult = tuple[Any, int, Mapping[str, str]]


def http_function(
    source: str | Path, *, models: list[str] | None = None, settings: Settings | None = None
) -> Callable[[Any], FlaskResult]:
    """The functions-framework HTTP target serving the model in ``source``'s folder.

    ``source`` is the function folder or a file in it (pass ``__file__``). With
    ``models``, the function serves each ``<folder>/<name>/`` instead (see :mod:`modelfn.group`).
    """
    function, settings = build_servable(source, models, settings)
    if settings.prefetch:
        _prefetch_in_worker(function)
    _json_framework_errors()

    def handle(request: Any) -> FlaskResult:
        # functions-framework passes flask.request, a proxy that finds the request again on every attribute.
        getter = getattr(request, "_get_current_object", None)
        if getter is not None:
            request = getter()
        try:
            received = _read_request(request, settings.max_body_bytes)
        except PayloadTooLarge as exc:
            from modelfn.http import error_response

            response = error_response(exc)
            # A streamed body tells functions-framework not to buffer the rest of
            # the oversized upload (its after-request hook reads whole bodies).
            return _once(response.body), response.status, {**response.headers, "Connection": "close"}
        response = handle_request(function, received)
        if response.stream is not None:  # Flask writes an iterator chunk by chunk, and closes it at the end or
            return response.stream, response.status, response.headers  # when the client goes away
        return response.body, response.status, response.headers

    handle.modelfn_function = function  # type: ignore[attr-defined]  # for tests and tooling
    if settings.wsgi_front:  # functions-framework's app answers this handler's requests before Flask
        install_front(handle, partial(handle_request, function), settings.max_body_bytes)
    return handle


def event_function(
    source: str | Path, *, models: list[str] | None = None, settings: Settings | None = None
) -> Callable[[Any], None]:
    """The functions-framework CloudEvent target for storage and Pub/Sub triggers.

    - ``google.cloud.storage.object.v1.finalized``: a batch prediction of the object
      (``MODELFN_BATCH_*`` settings say which objects and where results go);
    - ``google.cloud.pubsub.topic.v1.messagePublished`` (and legacy push envelopes, which
      functions-framework converts): the message is a ``POST /predict`` body, its answer goes to
      ``MODELFN_MESSAGE_OUTPUT``.

    Deploy it with entry point ``handle_event``. Returning acknowledges the event; raising asks for
    it again, which modelfn does only when the store or the model is unavailable.
    """
    import functions_framework

    function, settings = build_servable(source, models, settings)
    made: list[Any] = []  # the EventTriggers, made by the first event: an HTTP cold start never imports them
    verifier = None
    if settings.id_token_audience:  # Pub/Sub push straight to the function: its token is checked here
        from modelfn.security.id_tokens import id_token_verifier

        verifier = id_token_verifier(settings.id_token_audience, settings.id_token_emails, settings.id_token_certs_url)

    def handle_event(cloud_event: Any) -> None:
        if verifier is not None:
            _check_push_token(verifier)
        from modelfn.errors import ContractError, InvalidInput
        from modelfn.protocols.events import PUBSUB_PUBLISHED, from_cloud_event, message_from_cloud_event

        log = logging.getLogger("modelfn")
        if not made:
            from modelfn.protocols.events import EventTriggers

            made.append(EventTriggers(function, settings))
        triggers = made[0]
        try:
            if cloud_event["type"] == PUBSUB_PUBLISHED:
                triggers.messages().handle(message_from_cloud_event(cloud_event.data))
            else:
                triggers.storage().handle(from_cloud_event(cloud_event, cloud_event.data))
        except (InvalidInput, ContractError) as exc:
            # Not ours to retry (a malformed event, a configuration no redelivery can fix): acknowledge.
            log.error("event %s (%s) not processed: %s", cloud_event.get("id"), cloud_event["type"], exc.message)

    handle_event.modelfn_function = function  # type: ignore[attr-defined]
    # Registered by name, so `functions-framework --target handle_event` knows the signature.
    return functions_framework.cloud_event(handle_event)


def _check_push_token(verifier: Any) -> None:
    """Refuse an event whose HTTP request carries no valid ID token (401, not retried as a failure)."""
    import flask

    from modelfn.errors import Unauthorized
    from modelfn.security.api_keys import presented_key

    try:
        # werkzeug's Headers: a case-insensitive mapping of str, though not a typing.Mapping subclass.
        verifier.verify(presented_key(cast(Mapping[str, str], flask.request.headers)) or "")
    except Unauthorized:
        flask.abort(401, description="missing or invalid credentials")


def _prefetch_in_worker(function: Servable) -> None:
    """Start the load in the serving process, right after it is forked.

    functions-framework imports this module in gunicorn's master and forks the worker
    afterwards. Threads do not survive a fork, and a lock a library held in one at that
    moment would stay locked in the worker for good, so the master starts nothing: the
    load begins in each worker the master forks (a replaced worker prefetches again).
    """
    master = os.getpid()

    def after_fork() -> None:
        if os.getppid() == master:  # a worker of this master, not a process forked later by one
            threading.Thread(target=_prefetch, args=(function,), name="modelfn-prefetch", daemon=True).start()

    os.register_at_fork(after_in_child=after_fork)


def _prefetch(function: Servable) -> None:
    log = logging.getLogger("modelfn")
    try:
        function.prefetch()
        log.info("prefetch started in worker %d", os.getpid())
        from modelfn.protocols import router

        router()  # the routes and protocol modules too: the first request then pays for neither
    except ModelfnError as exc:  # the first request retries and reports it
        log.warning("prefetch failed: %s", exc.message)
    except Exception:
        log.exception("prefetch crashed")


def _json_framework_errors() -> None:
    """Answer the errors Flask raises before the function runs (a path its router cannot match, such as
    one with a newline) as ``{"error": ...}`` too, through functions-framework's public ``errorhandler``
    (a no-op outside a functions-framework app)."""
    import functions_framework
    from werkzeug.exceptions import HTTPException

    def as_json(error: HTTPException) -> FlaskResult:
        from modelfn.http import json_response

        status = error.code or 500
        message = "no route for this path" if status == 404 else error.name.lower()
        response = json_response({"error": message}, status)
        return response.body, status, dict(response.headers)

    functions_framework.errorhandler(HTTPException)(as_json)


def _read_request(request: Any, limit: int) -> Request:
    """A Flask (werkzeug) request as modelfn's, read as :class:`WsgiFront` reads it; at most ``limit`` bytes."""
    environ = getattr(request, "environ", None)
    if environ is not None:
        return request_from_environ(environ, limit, request.stream)
    declared = request.content_length  # a request object without a WSGI environ
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    body: bytes = request.stream.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
    from modelfn.http import Request

    return Request(request.method, request.path, body, request.headers)


def _once(body: bytes) -> Iterator[bytes]:
    yield body
