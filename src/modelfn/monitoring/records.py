"""A payload record: one CloudEvent (structured JSON) of a request and its answer, personal fields redacted.

Built on the payload log's writer thread, never on the request's (see :mod:`modelfn.monitoring.payload`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

if TYPE_CHECKING:
    from modelfn.contract import PayloadFields

#: The records' CloudEvents ``type``.
EVENT_TYPE = "org.modelfn.inference"


class Pending(NamedTuple):
    """What the request thread keeps of a request: no parsing, no copying beyond the references."""

    model: str
    version: str
    route: str
    status: int
    latency_s: float
    at: float
    request: bytes | None
    request_size: int
    request_type: str
    response: bytes | None
    response_size: int
    response_type: str
    streamed: bool
    request_id: str
    fields: PayloadFields | None

    @property
    def weight(self) -> int:
        return len(self.request or b"") + len(self.response or b"") + 512


#: How deep redaction walks a JSON body (bodies are bounded far below this by ``MODELFN_MAX_JSON_DEPTH``).
MAX_DEPTH = 64


def cloud_event(pending: Pending, instance: str, hash_key: bytes) -> bytes:
    """The record of ``pending`` as one line of JSON."""
    request = _body(pending.request, pending.request_size, pending.request_type)
    response = {"streamed": True} if pending.streamed else _body(pending.response, pending.response_size,
                                                                 pending.response_type)  # fmt: skip
    fields = pending.fields
    if fields is not None and (fields.omit or fields.hash):
        omit, hashed = frozenset(fields.omit), frozenset(fields.hash)
        request = redact(request, omit, hashed, hash_key)
        response = redact(response, omit, hashed, hash_key)
    millis = int(pending.at * 1000)
    event = {
        "specversion": "1.0",
        "id": pending.request_id or _body_id(request) or uuid.uuid4().hex,
        "source": f"modelfn/{instance}",
        "type": EVENT_TYPE,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(pending.at)) + f".{millis % 1000:03d}Z",
        "datacontenttype": "application/json",
        "model": pending.model,
        "modelversion": pending.version,
        "route": pending.route,
        "status": pending.status,
        "latencyms": round(pending.latency_s * 1000, 3),
        "data": {"request": request, "response": response},
    }
    return orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)


def _body(body: bytes | None, size: int, media_type: str) -> Any:
    if body is None:
        return {"omitted": "too large", "bytes": size}
    if not body:
        return None
    if "json" in media_type.lower() or body[:1] in (b"{", b"["):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return {"base64": base64.b64encode(body).decode(), "type": media_type[:100]}


def _body_id(request: Any) -> str:
    """An Open Inference Protocol request's own ``id``, which its answer repeats."""
    if isinstance(request, dict) and isinstance(request.get("id"), str):
        return request["id"][:128]
    return ""


def redact(value: Any, omit: frozenset[str], hashed: frozenset[str], key: bytes, depth: int = 0) -> Any:
    """``value`` without the ``omit`` fields and with the ``hashed`` ones as ``sha256:<hex>``.

    A field is an object's key at any depth, or an Open Inference Protocol tensor's ``name`` (its
    ``data`` is then what goes or is hashed).
    """
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, list):
        return [redact(item, omit, hashed, key, depth + 1) for item in value]
    if not isinstance(value, dict):
        return value
    name = value.get("name")
    if isinstance(name, str) and "data" in value and (name in omit or name in hashed):
        kept = {k: v for k, v in value.items() if k != "data"}
        if name in hashed:
            kept["data"] = digest(value["data"], key)
        return kept
    out: dict[str, Any] = {}
    for field, item in value.items():
        if field in omit:
            continue
        out[field] = digest(item, key) if field in hashed else redact(item, omit, hashed, key, depth + 1)
    return out


def digest(value: Any, key: bytes) -> str:
    """``sha256:<hex>`` of ``value``'s canonical JSON, keyed (HMAC) when ``key`` is set."""
    data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    mac = hmac.new(key, data, hashlib.sha256).hexdigest() if key else hashlib.sha256(data).hexdigest()
    return f"sha256:{mac}"
