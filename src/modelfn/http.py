"""Transport-neutral requests and responses, and the one place errors are rendered."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from modelfn.errors import MalformedBody, ModelfnError, PayloadTooLarge

if TYPE_CHECKING:
    from modelfn.settings import Settings

log = logging.getLogger("modelfn")

JSON_HEADERS: Mapping[str, str] = {"Content-Type": "application/json"}
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


class Request(NamedTuple):
    """What every adapter translates its platform's request into (records on the cold
    path are NamedTuples: ~0.2 ms to define against ~1 ms for a frozen dataclass).

    ``headers`` must look names up case-insensitively (adapters pass their
    platform's header object or a normalizing mapping).
    """

    method: str
    path: str
    body: bytes = b""
    headers: Mapping[str, str] = {}


class Headers(Mapping[str, str]):
    """Header names looked up case-insensitively (API Gateway keeps the client's case in 1.0;
    gRPC metadata is lower case)."""

    def __init__(self, raw: Mapping[str, str] | None) -> None:
        self._values = {str(name).lower(): str(value) for name, value in (raw or {}).items()}

    def __getitem__(self, name: str) -> str:  # Mapping's get() and `in` go through here
        return self._values[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class Response(NamedTuple):
    status: int
    body: bytes
    headers: Mapping[str, str] = JSON_HEADERS
    #: A streamed answer (``body`` is then empty): its chunks, written as they come by an adapter that
    #: streams, joined by one that cannot (:func:`buffered`). Closing it stops the work behind it, as a
    #: server closes a response whose client went away.
    stream: Iterator[bytes] | None = None


#: Says that a streamed answer was delivered whole, by a platform path that cannot stream.
BUFFERED_HEADER = "X-Modelfn-Streaming"


def buffered(response: Response) -> Response:
    """``response`` with its stream read to the end into ``body`` (and :data:`BUFFERED_HEADER` set)."""
    if response.stream is None:
        return response
    chunks = response.stream
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return Response(response.status, body, {**response.headers, BUFFERED_HEADER: "buffered"})


def event_stream(events: Iterator[bytes], headers: Mapping[str, str] | None = None) -> Response:
    """A ``text/event-stream`` (server-sent events) answer of already-framed events."""
    head = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(200, b"", {**head, **(headers or {})}, events)


def json_response(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """Serialize with orjson; numpy arrays are written natively, without Python loops."""
    return Response(status, orjson.dumps(value, option=JSON_OPTIONS), {**JSON_HEADERS, **(headers or {})})


#: Every inference response names the model version that produced it.
VERSION_HEADER = "X-Model-Version"


def error_response(error: ModelfnError) -> Response:
    """``{"error": "..."}`` with the error's status; model faults say nothing internal."""
    message = error.message if error.public else error.public_message
    return json_response({"error": message}, error.status, error.headers)


def parse_json(body: bytes, settings: Settings, *, non_finite: bool = False) -> Any:
    """Decode a JSON body within the settings' nesting and string limits, or raise a 4xx saying why.

    ``non_finite`` also takes the ``NaN``, ``Infinity`` and ``-Infinity`` tokens (TF Serving's JSON):
    orjson refuses them, so a body it refuses that holds one is read by the standard library's parser.
    """
    if not body.strip():
        raise MalformedBody("the body is empty; expected a JSON document")
    check_json_extent(body, settings.max_json_depth, settings.max_string_bytes)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if not (non_finite and (b"NaN" in body or b"Infinity" in body)):
            raise MalformedBody(f"the body is not valid JSON: {exc}") from None
    import json

    try:
        return json.loads(body)
    except ValueError as exc:
        raise MalformedBody(f"the body is not valid JSON: {exc}") from None


def parse_json_object(body: bytes, settings: Settings, *, non_finite: bool = False) -> dict[str, Any]:
    value = parse_json(body, settings, non_finite=non_finite)
    if not isinstance(value, dict):
        raise MalformedBody(f"the body must be a JSON object, got {type(value).__name__}")
    return value


def check_json_extent(body: bytes, max_depth: int, max_string: int) -> None:
    """Refuse a body nesting deeper than ``max_depth`` or holding a string over ``max_string`` bytes.

    Read from the raw bytes before parsing, so neither costs anything proportional to it. Cheap
    tests first: a body with fewer brackets than ``max_depth`` cannot nest deeper, a body shorter
    than ``max_string`` holds no longer string; only the others are scanned (with numpy, in C).
    An invalid document is left to the parser, which names its error.
    """
    deep = body.count(b"[") + body.count(b"{") > max_depth
    if not deep and len(body) <= max_string:
        return
    import numpy as np

    if b"\\" in body:  # escapes never end a string: blank them (left to right, as JSON reads them)
        body = body.replace(b"\\\\", b"__").replace(b'\\"', b"__")
    raw = np.frombuffer(body, np.uint8)
    quotes = np.flatnonzero(raw == ord('"'))
    if quotes.size % 2:
        return  # an unterminated string: not JSON
    if quotes.size and len(body) > max_string:
        longest = int((quotes[1::2] - quotes[::2]).max()) - 1
        if longest > max_string:
            raise PayloadTooLarge(f"a string in the body is {longest} bytes; the limit is {max_string}")
    if deep:
        brackets = np.flatnonzero((raw == ord("[")) | (raw == ord("{")) | (raw == ord("]")) | (raw == ord("}")))
        outside = np.searchsorted(quotes, brackets) % 2 == 0  # an even number of quotes before: not in a string
        brackets = brackets[outside]
        kind = raw[brackets]
        steps = np.where((kind == ord("[")) | (kind == ord("{")), 1, -1).astype(np.int32)
        depth = int(np.cumsum(steps).max()) if steps.size else 0
        if depth > max_depth:
            raise MalformedBody(f"the body nests {depth} levels deep; the limit is {max_depth}")
