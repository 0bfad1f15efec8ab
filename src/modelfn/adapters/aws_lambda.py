"""AWS Lambda adapter: API Gateway REST (payload 1.0), HTTP APIs (1.0 and 2.0), function URLs; S3 and SQS
records; Alexa skill requests.

A function folder's ``lambda_function.py`` is::

    from modelfn.adapters.aws_lambda import lambda_function

    handler = lambda_function(__file__)

deployed with handler ``lambda_function.handler``. The same core serves every protocol as on
functions-framework; only the event is translated. As there, building the handler reads the
``MODELFN_*`` settings and nothing else.

An Alexa skill may invoke the function directly (the ``alexaSkill`` event of ``serverless.yml``): the
event is the request envelope and the answer the response envelope. Lambda's permission limits the
caller to the skill, and the envelope's skill id and timestamp are checked as on ``/alexa``; a
request that fails them raises, so Alexa is told the invocation failed.

Bodies are limited before they are decoded, and responses are held to Lambda's 6 MB
synchronous payload limit, so an oversized answer is a clear 413 instead of a platform error.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelfn.adapters.dispatch import handle_request
from modelfn.adapters.process import build_servable, load_and_wait
from modelfn.errors import MalformedBody, ModelfnError, PayloadTooLarge
from modelfn.settings import Settings

#: Lambda's synchronous response limit is 6 MB for the whole JSON document it returns;
#: the envelope and the headers take some of it.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 - 16 * 1024
#: Media types returned as text; everything else is base64 (API Gateway REST needs
#: ``binaryMediaTypes`` for those: the generated ``serverless.yml`` declares them).
TEXT_TYPES = ("application/json", "text/")

LambdaEvent = dict[str, Any]
LambdaResult = dict[str, Any]


def lambda_function(
    source: str | Path, *, models: list[str] | None = None, settings: Settings | None = None
) -> Callable[[LambdaEvent, Any], LambdaResult]:
    """The Lambda handler serving the model in ``source``'s folder (pass ``__file__``).

    With ``MODELFN_PREFETCH=1`` the model is loaded during Lambda's init phase, which
    runs before the first invocation at full CPU; otherwise the first request loads it.
    Under SnapStart the init is the snapshot's, so the model always loads there
    (see :mod:`modelfn.adapters.snapstart`).
    """
    function, settings = build_servable(source, models, settings)
    from modelfn.adapters import snapstart

    snapstart.register(function, settings)  # SnapStart's hooks, where Lambda's runtime has them
    if settings.payload_log:  # made here without its writer thread: Lambda freezes the process between calls
        from modelfn.monitoring.payload import payload_log

        payload_log(settings, background=False)
    if settings.monitor_store:
        from modelfn.monitoring.drift import BACKGROUND

        BACKGROUND[0] = False
    if settings.prefetch:
        # Lambda freezes the sandbox between invocations, so a background load would stall;
        # the init phase is the time to do it, bounded like any request's wait.
        load_and_wait(function, settings.load_wait_s)

    triggers: list[Any] = []  # the EventTriggers, made on the first S3 or SQS record

    def handler(event: LambdaEvent, context: Any = None) -> LambdaResult:
        from modelfn.http import Response, error_response

        if isinstance(event, dict) and isinstance(event.get("Records"), list):
            return _records(event, function, settings, triggers)
        if _is_alexa(event):
            from modelfn.protocols.alexa import answer_envelope

            return answer_envelope(function, event)
        try:
            request = request_from_event(event, settings.max_body_bytes)
        except ModelfnError as exc:
            return to_lambda_result(error_response(exc))
        response: Response = handle_request(function, request)
        result = to_lambda_result(response)
        if settings.monitor_store:  # the same for drift summaries
            from modelfn.monitoring.drift import flush_due

            flush_due()
        if settings.payload_log:  # a frozen process runs no thread: write a due batch before returning
            from modelfn.monitoring.payload import payload_log

            payloads = payload_log(settings, background=False)
            if payloads.due():
                payloads.flush()
        return result

    handler.modelfn_function = function  # type: ignore[attr-defined]  # for tests and tooling
    return handler


def _is_alexa(event: Any) -> bool:
    """An Alexa request envelope (``version``, ``request.type``), not an HTTP event."""
    return (
        isinstance(event, dict)
        and "requestContext" not in event
        and isinstance(event.get("request"), dict)
        and isinstance(event["request"].get("type"), str)
        and "version" in event
    )


def _records(event: LambdaEvent, function: Any, settings: Settings, triggers: list[Any]) -> LambdaResult:
    """S3 notifications (a batch prediction per created object) and SQS batches (a prediction per message).

    For S3, returning acknowledges the invocation and raising (store or model unavailable) makes
    Lambda retry it. For SQS, the messages that could not be handled for now are listed in
    ``batchItemFailures`` (the event source mapping's ``ReportBatchItemFailures``), so only
    they come back.
    """
    import logging

    from modelfn.errors import ContractError, InvalidInput, ModelNotReady
    from modelfn.protocols.events import EventTriggers, from_s3_records, messages_from_sqs

    log = logging.getLogger("modelfn")
    if not triggers:
        triggers.append(EventTriggers(function, settings))
    records: EventTriggers = triggers[0]
    first = event["Records"][0] if event["Records"] else None
    try:
        if isinstance(first, dict) and first.get("eventSource") == "aws:sqs":
            messages = messages_from_sqs(event)
            handler = records.messages()
        else:
            objects = from_s3_records(event)
            return {"batch": [records.storage().handle(each) for each in objects]}
    except (InvalidInput, ContractError) as exc:
        log.error("records ignored: %s", exc.message)
        return {"ignored": exc.message}
    failures = []
    for message in messages:
        try:
            handler.handle(message)
        except ModelNotReady as exc:
            log.warning("message %s will be delivered again: %s", message.id, exc.message)
            failures.append({"itemIdentifier": message.id})
        except ContractError as exc:  # a setting no redelivery fixes; the stored answer stays
            log.error("message %s: %s", message.id, exc.message)
    return {"batchItemFailures": failures}


def request_from_event(event: Any, max_body_bytes: int) -> Any:
    """An API Gateway or function URL event -> :class:`modelfn.http.Request`; 4xx when it is not one."""
    from modelfn.http import Headers, Request

    if not isinstance(event, dict) or not isinstance(event.get("requestContext"), dict):
        raise MalformedBody("not an HTTP event: expected an API Gateway or Lambda function URL event")
    context = event["requestContext"]
    if event.get("version") == "2.0":
        http = context.get("http") or {}
        method, path = http.get("method"), event.get("rawPath")
        stage = context.get("stage")
        # An HTTP API stage other than $default is the first path segment; routes do not include it.
        if isinstance(stage, str) and stage != "$default" and isinstance(path, str):
            prefix = f"/{stage}"
            if path == prefix or path.startswith(prefix + "/"):
                path = path[len(prefix) :] or "/"
    else:
        method, path = event.get("httpMethod"), event.get("path")
    if not isinstance(method, str) or not isinstance(path, str):
        raise MalformedBody("the HTTP event has no method or path")
    headers = event.get("headers")
    if headers is not None and not isinstance(headers, dict):
        raise MalformedBody("the HTTP event's headers must be an object")
    return Request(method=method.upper(), path=path, body=_body(event, max_body_bytes), headers=Headers(headers))


def _body(event: dict[str, Any], limit: int) -> bytes:
    raw = event.get("body")
    if raw is None:
        return b""
    if not isinstance(raw, str):
        raise MalformedBody("the HTTP event's body must be a string")
    if event.get("isBase64Encoded"):
        # Checked before decoding: base64 is 4 characters for every 3 bytes.
        if len(raw) > (limit + 2) // 3 * 4:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedBody("the body is marked base64 but is not valid base64") from None
    else:
        if len(raw) > limit:  # characters: never more than the UTF-8 bytes
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
        body = raw.encode("utf-8", "surrogatepass")
    if len(body) > limit:
        raise PayloadTooLarge(f"the body is {len(body)} bytes; the limit is {limit}")
    return body


def to_lambda_result(response: Any) -> LambdaResult:
    """A :class:`modelfn.http.Response` as the proxy integration result (the same shape for 1.0 and 2.0)."""
    from modelfn.http import Headers, buffered, error_response

    # Lambda's Python runtime returns a whole result: a streamed answer (server-sent events) is
    # generated to its end here and returned at once, marked X-Modelfn-Streaming: buffered.
    response = buffered(response)
    headers = dict(response.headers)
    as_text = Headers(headers).get("Content-Type", "").startswith(TEXT_TYPES)
    size = len(response.body) if as_text else (len(response.body) + 2) // 3 * 4
    if size > MAX_RESPONSE_BYTES:
        return to_lambda_result(
            error_response(
                PayloadTooLarge(
                    f"the response would be {size} bytes; Lambda returns at most {MAX_RESPONSE_BYTES}: "
                    "send fewer rows per request, or ask for binary outputs"
                )
            )
        )
    if as_text:
        body, encoded = response.body.decode("utf-8"), False
    else:
        body, encoded = base64.b64encode(response.body).decode("ascii"), True
    return {"statusCode": response.status, "headers": headers, "body": body, "isBase64Encoded": encoded}
