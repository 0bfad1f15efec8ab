"""An Alexa custom skill: ``POST /alexa`` (``/models/{name}/alexa``), or the Lambda event itself.

Requests are verified first (:mod:`modelfn.security.alexa_verifier`: certificate URL and chain, signature
of the raw body, timestamp, skill id); a failed check is a 400 and nothing runs. Then:

- ``LaunchRequest``: the contract's ``conversation.welcome``; the session stays open.
- ``IntentRequest``: ``AMAZON.HelpIntent`` says ``help``; ``AMAZON.StopIntent`` and
  ``AMAZON.CancelIntent`` say ``goodbye`` and end the session; ``AMAZON.FallbackIntent`` says
  ``fallback``. Any other intent is a question: its slots (resolved to the canonical value when
  entity resolution matched) become a turn for the model (:mod:`modelfn.protocols.conversation`).
- ``SessionEndedRequest`` (and any other type): an empty response, as Alexa expects.

Speech is SSML with the text escaped, within Alexa's limits (8,000 characters of speech and of
card text, 24 KB in all); a simple card shows the same words in the Alexa app. Alexa waits 8 s
for an answer; the model gets 7 s.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

import orjson

from modelfn.errors import NotFound
from modelfn.http import VERSION_HEADER, Request, Response, parse_json_object
from modelfn.protocols.conversation import Turn, converse, shorten

if TYPE_CHECKING:
    from modelfn.contract import Contract
    from modelfn.function import ModelFunction, Servable

log = logging.getLogger("modelfn")

TIMEOUT_S = 7.0
MAX_SPEECH_CHARS = 8000
MAX_CARD_CHARS = 8000
MAX_RESPONSE_BYTES = 24 * 1024
STOP_INTENTS = frozenset({"AMAZON.StopIntent", "AMAZON.CancelIntent"})
_ENTITIES = {'"': "&quot;", "'": "&apos;"}
_HEADERS = {"Content-Type": "application/json;charset=UTF-8"}


def webhook(function: Servable, request: Request, name: str | None = None) -> Response:
    """``POST /alexa``: verify, then answer (see the module docstring)."""
    settings = function.settings
    if not settings.alexa_skill_ids:
        raise NotFound("the Alexa endpoint is off: set MODELFN_ALEXA_SKILL_IDS to your skill's id")
    from modelfn.security.alexa_verifier import alexa_verifier

    verifier = alexa_verifier(settings.alexa_skill_ids, settings.alexa_trust_store, settings.alexa_cert_mirror)
    # The skill id and timestamp first: a request for another skill, or a stale one, costs no
    # certificate fetch. The signature is then verified on the raw bytes, before anything is used.
    envelope = parse_json_object(request.body, settings)
    verifier.check_envelope(envelope)
    verifier.verify_signature(request.headers, request.body)
    member = function.member(name)
    answer = respond(member, envelope)
    return Response(200, orjson.dumps(answer), {**_HEADERS, VERSION_HEADER: member.contract().version})


def answer_envelope(function: Servable, envelope: dict[str, Any]) -> dict[str, Any]:
    """A direct Lambda invocation by the skill: its skill id and timestamp checked, then answered.

    Raises :class:`~modelfn.security.alexa_verifier.VerificationFailed` (Alexa sees a failed invocation).
    """
    import time

    from modelfn.security.alexa_verifier import check_envelope, skill_ids

    allowed = skill_ids(function.settings.alexa_skill_ids)
    if not allowed:
        raise NotFound("the Alexa skill is off: set MODELFN_ALEXA_SKILL_IDS to your skill's id")
    check_envelope(envelope, allowed, time.time())
    return respond(function.member(None), envelope)


def respond(member: ModelFunction, envelope: dict[str, Any]) -> dict[str, Any]:
    """The response envelope for a verified request envelope."""
    request = envelope["request"]
    kind = request.get("type")
    contract = member.contract()
    conversation = contract.conversation
    if kind == "LaunchRequest":
        return _speak(contract, conversation.welcome, end=False)
    if kind != "IntentRequest":
        if kind == "SessionEndedRequest":
            log.info("Alexa session ended: %s %s", str(request.get("reason"))[:40], str(request.get("error"))[:200])
        return {"version": "1.0", "response": {}}
    intent = request.get("intent")
    intent = intent if isinstance(intent, dict) else {}
    intent_name = intent.get("name")
    intent_name = intent_name if isinstance(intent_name, str) else ""
    if intent_name == "AMAZON.HelpIntent":
        return _speak(contract, conversation.help or conversation.welcome, end=False)
    if intent_name in STOP_INTENTS:
        return _speak(contract, conversation.goodbye, end=True)
    if intent_name == "AMAZON.FallbackIntent":
        return _speak(contract, conversation.fallback, end=False)
    slots = slot_values(intent.get("slots"))
    turn = Turn(
        platform="alexa",
        intent=intent_name,
        slots=slots,
        text=next(iter(slots.values()), ""),
        locale=request.get("locale") if isinstance(request.get("locale"), str) else "",
    )
    said = converse(member, turn, timeout=TIMEOUT_S)
    return _speak(contract, said.text, end=not conversation.reprompt)


def slot_values(slots: Any) -> dict[str, str]:
    """``{slot name: value}`` of the slots that were filled, canonical where entity resolution matched."""
    if not isinstance(slots, dict):
        return {}
    values = {}
    for name, slot in slots.items():
        if not isinstance(slot, dict):
            continue
        value = slot.get("value")
        for authority in (slot.get("resolutions") or {}).get("resolutionsPerAuthority") or []:
            if (authority.get("status") or {}).get("code") == "ER_SUCCESS_MATCH" and authority.get("values"):
                value = ((authority["values"][0] or {}).get("value") or {}).get("name", value)
                break
        if isinstance(value, str) and value.strip():
            values[str(name)] = value
    return values


def ssml(text: str) -> str:
    """``<speak>`` around ``text`` escaped for XML, cut so the whole stays within Alexa's limit."""
    limit = MAX_SPEECH_CHARS - len("<speak></speak>")
    escaped = escape(text, _ENTITIES)
    while len(escaped) > limit:  # escaping lengthens the text: cut the source, escape again
        text = shorten(text, len(text) - (len(escaped) - limit) - 1)
        escaped = escape(text, _ENTITIES)
    return f"<speak>{escaped}</speak>"


def _speak(contract: Contract, text: str, *, end: bool) -> dict[str, Any]:
    response: dict[str, Any] = {
        "outputSpeech": {"type": "SSML", "ssml": ssml(text)},
        "card": {"type": "Simple", "title": contract.name, "content": shorten(text, MAX_CARD_CHARS)},
        "shouldEndSession": end,
    }
    reprompt = contract.conversation.reprompt
    if not end and reprompt:
        response["reprompt"] = {"outputSpeech": {"type": "SSML", "ssml": ssml(reprompt)}}
    envelope = {"version": "1.0", "response": response}
    if len(orjson.dumps(envelope)) > MAX_RESPONSE_BYTES:  # escaped speech + card: drop the card first
        del response["card"]
    return envelope
