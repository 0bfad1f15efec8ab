"""Pre/post-processing for the helpdesk model: a question in, an answer out.

``POST /predict`` with ``{"text": "how do I deploy to cloud run?"}`` (or ``{"texts": [...]}``)
answers ``{"intent": "deploy_gcp", "confidence": 0.71, "answer": "...", "alternatives": [...]}``.
Below :data:`MIN_CONFIDENCE` the intent is ``null`` and the answer says so: on the held-out
phrasings that threshold keeps 96% of the right answers and turns away most off-topic questions.

``from_turn`` maps an Alexa or Dialogflow turn to the same payload: the skill's ``question``
slot (an ``AMAZON.SearchQuery``) or the words Dialogflow heard.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelfn import InvalidInput

from .answers import ANSWERS, FALLBACK, MIN_CONFIDENCE
from .text_features import features

MAX_TEXTS = 32
MAX_CHARACTERS = 500
INTENTS = list(ANSWERS)


def preprocess(payload: Any) -> dict[str, np.ndarray]:
    if not isinstance(payload, dict) or ("text" in payload) == ("texts" in payload):
        raise InvalidInput('send {"text": "your question"} or {"texts": ["question", ...]}')
    texts = [payload["text"]] if "text" in payload else payload["texts"]
    if not isinstance(texts, list) or not 1 <= len(texts) <= MAX_TEXTS:
        raise InvalidInput(f"`texts` must be a list of 1 to {MAX_TEXTS} questions")
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("each question must be a non-empty string")
        if len(text) > MAX_CHARACTERS:
            raise InvalidInput(f"a question may have at most {MAX_CHARACTERS} characters, got {len(text)}")
    return {"features": features(texts)}


def postprocess(outputs: dict[str, np.ndarray], payload: dict[str, Any]) -> dict[str, Any]:
    answers = [_answer(probabilities) for probabilities in outputs["probabilities"]]
    return answers[0] if "text" in payload else {"answers": answers}


def _answer(probabilities: np.ndarray) -> dict[str, Any]:
    ranked = np.argsort(probabilities)[::-1][:3]
    best = int(ranked[0])
    confident = float(probabilities[best]) >= MIN_CONFIDENCE
    return {
        "intent": INTENTS[best] if confident else None,
        "confidence": round(float(probabilities[best]), 4),
        "answer": ANSWERS[INTENTS[best]] if confident else FALLBACK,
        "alternatives": [{"intent": INTENTS[i], "confidence": round(float(probabilities[i]), 4)} for i in ranked],
    }


def from_turn(turn: dict[str, Any]) -> dict[str, Any]:
    """A conversation turn (``/alexa``, ``/dialogflow``) as the payload of ``POST /predict``."""
    text = turn["slots"].get("question") or turn["text"]
    if not text:
        raise InvalidInput("no question was heard")
    return {"text": text[:MAX_CHARACTERS]}
