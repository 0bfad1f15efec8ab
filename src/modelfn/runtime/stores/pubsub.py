"""Publishing to a Pub/Sub topic over its REST API, with no gRPC client library in the function's bundle.

``PUBSUB_EMULATOR_HOST`` points it at the emulator; otherwise Google's default credentials are used.
A topic is ``projects/<project>/topics/<topic>``. Failures the next attempt may not see (a timeout,
5xx, 429) raise :class:`StoreUnavailable`; a refusal (4xx) raises :class:`ContractError`.
"""

from __future__ import annotations

import os
import re
from typing import Any

from modelfn.errors import ContractError, StoreUnavailable

PUBSUB_API = "https://pubsub.googleapis.com/v1"
#: What one publish call may carry (Pub/Sub's limits: 1,000 messages, 10 MB a request).
MAX_MESSAGES = 1000
MAX_REQUEST_BYTES = 9 << 20
_TOPIC = re.compile(r"^projects/[A-Za-z0-9._:-]{1,100}/topics/[A-Za-z0-9._~+%-]{1,255}$")


def check_topic(topic: str, variable: str) -> str:
    """``topic`` if it is ``projects/<project>/topics/<topic>``, else a :class:`ContractError` naming ``variable``."""
    if not _TOPIC.fullmatch(topic):
        raise ContractError(f"{variable}={topic[:200]!r}: expected projects/<project>/topics/<topic>")
    return topic


def publish(topic: str, messages: list[tuple[bytes, dict[str, str]]]) -> None:
    """Publish ``(data, attributes)`` messages, in as few calls as Pub/Sub's limits allow."""
    import base64

    batch: list[dict[str, Any]] = []
    size = 0
    for data, attributes in messages:
        encoded = {"data": base64.b64encode(data).decode(), "attributes": attributes}
        weight = len(encoded["data"]) + 256
        if batch and (len(batch) == MAX_MESSAGES or size + weight > MAX_REQUEST_BYTES):
            _post(topic, batch)
            batch, size = [], 0
        batch.append(encoded)
        size += weight
    if batch:
        _post(topic, batch)


def _post(topic: str, messages: list[dict[str, Any]]) -> None:
    import requests

    emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
    try:
        if emulator:
            answer = requests.post(f"http://{emulator}/v1/{topic}:publish", json={"messages": messages}, timeout=30)
        else:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/pubsub"])
            answer = AuthorizedSession(credentials).post(
                f"{PUBSUB_API}/{topic}:publish", json={"messages": messages}, timeout=30
            )
    except requests.RequestException as exc:
        raise StoreUnavailable(f"publishing to {topic}: {type(exc).__name__}") from None
    if answer.status_code >= 500 or answer.status_code == 429:
        raise StoreUnavailable(f"publishing to {topic}: HTTP {answer.status_code}")
    if answer.status_code >= 400:
        raise ContractError(f"publishing to {topic} was refused: HTTP {answer.status_code} {answer.text[:200]}")
