"""The chat function's hooks: a question in plain JSON (``POST /predict``, Alexa, Dialogflow, the web
page) becomes one chat turn the model answers; the answer comes back as ``{"answer": ...}``.

The OpenAI-compatible routes do not use them: they apply the model's chat template themselves.
"""

from __future__ import annotations

from typing import Any

from modelfn.errors import InvalidInput

#: The model's chat template for one user turn (model/chat_template.jinja); its markers are taken out
#: of the question, so a question cannot write the assistant's turn.
USER, ASSISTANT = "<|user|>", "<|assistant|>"
MAX_CHARACTERS = 500


def preprocess(payload: Any) -> dict[str, list[str]]:
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput('send {"text": "your question"}')
    if len(text) > MAX_CHARACTERS:
        raise InvalidInput(f"the question is {len(text)} characters; the limit is {MAX_CHARACTERS}")
    question = text.replace("<|", "").replace("|>", "").strip()
    return {"text_input": [f"{USER}{question}{ASSISTANT}"]}


def postprocess(outputs: dict[str, Any], payload: Any) -> dict[str, str]:
    return {"answer": str(outputs["text_output"][0]).strip()}
