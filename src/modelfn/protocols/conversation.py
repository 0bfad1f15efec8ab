"""One conversation turn through a model: what voice and chat platforms share.

A platform adapter (:mod:`modelfn.protocols.alexa`, :mod:`modelfn.protocols.dialogflow`) turns
its request into a :class:`Turn`; :func:`converse` maps it to the model's payload (the contract's
``hooks.turn``, or ``{conversation.input: the words heard}``), runs the plain JSON route's hooks
and model within the platform's deadline, and picks the sentence to say back
(``conversation.reply``). A question the model refuses gets the contract's ``fallback`` sentence;
a failure of ours gets an apology: a platform shows its users a generic error for any non-200
answer, so both are answered in words (and logged).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from modelfn.errors import ClientError, ModelfnError

if TYPE_CHECKING:
    from modelfn.function import ModelFunction

log = logging.getLogger("modelfn")

#: Said when the model could not answer for a reason of ours (overload, deadline, fault).
APOLOGY = "Sorry, I can't answer right now. Please try again in a moment."


class Turn(NamedTuple):
    """What a user said, as any platform delivers it."""

    platform: str
    #: The platform's intent name (Alexa's intent, Dialogflow's matched intent or CX tag); may be empty.
    intent: str
    #: Slot or parameter values by name, as strings (a missing Alexa slot value is left out).
    slots: dict[str, str]
    #: The words heard, when the platform gives them (Dialogflow); for Alexa, the first slot value.
    text: str
    locale: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {**self._asdict(), "slots": dict(self.slots)}


class Said(NamedTuple):
    """The sentence to say back, the model's whole answer, and whether the model answered."""

    text: str
    answer: Any = None
    answered: bool = False


def converse(member: ModelFunction, turn: Turn, *, timeout: float) -> Said:
    """Answer ``turn`` with ``member``'s model within ``timeout`` seconds; never raises a ModelfnError."""
    try:
        model = member.model()
    except ModelfnError as exc:  # loading, or cannot load: the platform gets words, the log the reason
        log.warning("%s turn not answered, the model is not available: %s", turn.platform, exc.message)
        return Said(APOLOGY)
    conversation = model.contract.conversation
    try:
        if model.hooks.turn is not None:
            payload = model._call_hook("turn", model.hooks.turn, turn.as_dict())
        elif turn.text.strip():
            payload = {conversation.input: turn.text}
        else:
            return Said(conversation.fallback)
        answer = member.run(
            lambda: model.predict_json(payload), inline=model.interruptible(hooks=True), timeout=timeout
        )
    except ClientError as exc:
        log.info("%s turn on %s not answered: %s", turn.platform, model.contract.name, exc.message)
        return Said(conversation.fallback)
    except ModelfnError as exc:
        log.warning("%s turn on %s failed: %s", turn.platform, model.contract.name, exc.message)
        return Said(APOLOGY)
    return Said(reply_text(answer, conversation.reply), answer, answered=True)


def reply_text(answer: Any, field: str) -> str:
    """The sentence in ``answer``: itself if a string, its ``field`` if that is one, else compact JSON."""
    if isinstance(answer, str):
        return answer
    if isinstance(answer, dict) and isinstance(answer.get(field), str):
        return answer[field]
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, marked with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0] if " " in text[: limit - 1] else text[: limit - 1]
    return cut + "…"
