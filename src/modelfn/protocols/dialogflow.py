"""Dialogflow ES and CX fulfillment webhooks: ``POST /dialogflow`` (``/models/{name}/dialogflow``).

The request's shape tells the two apart (ES sends ``queryResult``; CX sends ``fulfillmentInfo`` and
``sessionInfo``). The words heard, the matched intent (or CX tag) and the parameters become a
:class:`~modelfn.protocols.conversation.Turn`; the answer goes back as ES ``fulfillmentText`` and
``fulfillmentMessages``, or CX ``fulfillmentResponse``, with the model's whole answer under
``payload.modelfn``. Dialogflow waits 5 s for a webhook, so the model gets 4.5 s.

Authentication, checked before the body is read (see :func:`check_credentials`): basic auth
(``MODELFN_DIALOGFLOW_BASIC_AUTH``), a secret header (``MODELFN_DIALOGFLOW_SECRET`` in
``MODELFN_DIALOGFLOW_SECRET_HEADER``), or a Google ID token (CX service agent auth, with
``MODELFN_ID_TOKEN_AUDIENCE``), each compared in constant time. With none configured the route
is off (404): a webhook is never open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from modelfn.errors import MalformedBody, NotFound, Unauthorized
from modelfn.http import VERSION_HEADER, Request, Response, json_response, parse_json_object
from modelfn.protocols.conversation import Turn, converse

if TYPE_CHECKING:
    from modelfn.function import Servable
    from modelfn.settings import Settings

#: Dialogflow gives a webhook 5 s (ES; CX's default) before it answers the user without it.
TIMEOUT_S = 4.5
#: Dialogflow refuses webhook responses over 64 KiB.
MAX_RESPONSE_BYTES = 64 * 1024
_MAX_PARAMETER_CHARS = 500


def webhook(function: Servable, request: Request, name: str | None = None) -> Response:
    check_credentials(request, function.settings)
    body = parse_json_object(request.body, function.settings)
    member = function.member(name)
    if isinstance(body.get("queryResult"), dict):
        turn = _es_turn(body["queryResult"])
        cx = False
    elif isinstance(body.get("fulfillmentInfo"), dict) or isinstance(body.get("sessionInfo"), dict):
        turn = _cx_turn(body)
        cx = True
    else:
        raise MalformedBody("not a Dialogflow webhook request: expected `queryResult` (ES) or `fulfillmentInfo` (CX)")
    said = converse(member, turn, timeout=TIMEOUT_S)
    contract = member.contract()
    message = [{"text": {"text": [said.text]}}]
    payload = {"modelfn": {"model": contract.name, "version": contract.version, "answer": said.answer}}
    if cx:
        answer: dict[str, Any] = {"fulfillmentResponse": {"messages": message, "mergeBehavior": "REPLACE"}}
    else:
        answer = {"fulfillmentText": said.text, "fulfillmentMessages": message, "source": "modelfn"}
    response = json_response({**answer, "payload": payload}, headers={VERSION_HEADER: contract.version})
    if len(response.body) > MAX_RESPONSE_BYTES:  # the words matter, the structured answer can go
        response = json_response(answer, headers={VERSION_HEADER: contract.version})
    return response


def _es_turn(result: dict[str, Any]) -> Turn:
    intent = result.get("intent")
    return Turn(
        platform="dialogflow-es",
        intent=_text(intent.get("displayName")) if isinstance(intent, dict) else "",
        slots=_parameters(result.get("parameters")),
        text=_text(result.get("queryText")),
        locale=_text(result.get("languageCode")),
    )


def _object(value: Any) -> dict[str, Any]:
    """A JSON object of the request, or an empty one where it sent something else (or nothing)."""
    return value if isinstance(value, dict) else {}


def _cx_turn(body: dict[str, Any]) -> Turn:
    info, session, intent = (_object(body.get(key)) for key in ("fulfillmentInfo", "sessionInfo", "intentInfo"))
    slots = _parameters(session.get("parameters"))
    if isinstance(intent.get("parameters"), dict):  # {"city": {"originalValue": ..., "resolvedValue": ...}}
        resolved = {k: v.get("resolvedValue") for k, v in intent["parameters"].items() if isinstance(v, dict)}
        slots = {**_parameters(resolved), **slots}
    return Turn(
        platform="dialogflow-cx",
        intent=_text(info.get("tag")) or _text(intent.get("displayName")),
        slots=slots,
        text=_text(body.get("text")) or _text(body.get("transcript")),
        locale=_text(body.get("languageCode")),
    )


def _text(value: Any) -> str:
    return value[:_MAX_PARAMETER_CHARS] if isinstance(value, str) else ""


def _parameters(values: Any) -> dict[str, str]:
    """Scalar parameters as strings (lists and objects are left out: a slot is one value)."""
    if not isinstance(values, dict):
        return {}
    return {
        str(k)[:100]: str(v)[:_MAX_PARAMETER_CHARS]
        for k, v in values.items()
        if isinstance(v, str | int | float) and not isinstance(v, bool) and v != ""
    }


def check_credentials(request: Request, settings: Settings) -> None:
    """Pass a request carrying any configured credential; 401 otherwise, 404 when none is configured."""
    configured = False
    if settings.dialogflow_basic_auth:
        configured = True
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic" and _same(_decoded(value), settings.dialogflow_basic_auth):
            return
    if settings.dialogflow_secret:
        configured = True
        if _same(request.headers.get(settings.dialogflow_secret_header, ""), settings.dialogflow_secret):
            return
    if settings.id_token_audience:
        configured = True
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            from modelfn.security.id_tokens import id_token_verifier

            verifier = id_token_verifier(
                settings.id_token_audience, settings.id_token_emails, settings.id_token_certs_url
            )
            verifier.verify(token.strip())  # raises the same 401 as any other failure
            return
    if not configured:
        raise NotFound(
            "the Dialogflow webhook is off: set MODELFN_DIALOGFLOW_BASIC_AUTH, MODELFN_DIALOGFLOW_SECRET "
            "or MODELFN_ID_TOKEN_AUDIENCE"
        )
    raise Unauthorized(
        "missing or invalid webhook credentials", headers={"WWW-Authenticate": 'Basic realm="dialogflow"'}
    )


def _decoded(value: str) -> str:
    try:
        return base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""


def _same(presented: str, expected: str) -> bool:
    """Constant time, whatever the lengths: both sides are hashed to 32 bytes first."""
    return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), hashlib.sha256(expected.encode()).digest())
