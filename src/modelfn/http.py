"""Transport-neutral requests and responses, and the one place errors are rendered."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from modelfn.errors import MalformedBody, ModelfnError

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


class Response(NamedTuple):
    status: int
    body: bytes
    headers: Mapping[str, str] = JSON_HEADERS


def json_response(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """Serialize with orjson; numpy arrays are written natively, without Python loops."""
    return Response(status, orjson.dumps(value, option=JSON_OPTIONS), {**JSON_HEADERS, **(headers or {})})


#: Every inference response names the model version that produced it.
VERSION_HEADER = "X-Model-Version"


def error_response(error: ModelfnError) -> Response:
    """``{"error": "..."}`` with the error's status; model faults say nothing internal."""
    message = error.message if error.public else error.public_message
    return json_response({"error": message}, error.status, error.headers)


def parse_json(body: bytes) -> Any:
    """Decode a JSON body, or raise a 400 that says what is wrong with it."""
    if not body.strip():
        raise MalformedBody("the body is empty; expected a JSON document")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"the body is not valid JSON: {exc}") from None


def parse_json_object(body: bytes) -> dict[str, Any]:
    value = parse_json(body)
    if not isinstance(value, dict):
        raise MalformedBody(f"the body must be a JSON object, got {type(value).__name__}")
    return value
