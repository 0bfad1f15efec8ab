"""Chat messages to a prompt, through the model's chat template (Jinja, as Hugging Face tokenizers carry it).

The template is the operator's (a file pinned by sha256 in the contract), but the messages are the
caller's, so it runs in Jinja's immutable sandbox, as ``transformers`` runs it: a message cannot
reach Python attributes or change the template's objects. Jinja is in the ``genai`` extra (and comes
with Flask, which functions-framework brings); a bundle of a generative model carries it.
"""

from __future__ import annotations

from typing import Any

from modelfn.errors import ContractError, InvalidInput

ROLES = ("system", "user", "assistant")
#: Most messages in one request: a long history is refused before the template runs, not after.
MAX_MESSAGES = 256


class ChatTemplate:
    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        try:
            self._template = environment.from_string(source)
        except TemplateError as exc:
            raise ContractError(f"generation.chat_template is not a valid Jinja template: {exc}") from None
        self._specials = {"bos_token": bos_token, "eos_token": eos_token}

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt for ``messages`` (checked by :func:`checked_messages`), ending where the answer starts."""
        from jinja2 import TemplateError

        try:
            return self._template.render(messages=messages, add_generation_prompt=True, **self._specials)
        except TemplateError as exc:  # a template's own raise_exception(), or a sandbox refusal
            raise InvalidInput(f"the chat template refused these messages: {exc}") from None


def checked_messages(value: Any) -> list[dict[str, str]]:
    """OpenAI's ``messages``: a list of ``{"role", "content"}``, content a string or a list of text parts."""
    if not isinstance(value, list) or not value:
        raise InvalidInput("messages must be a non-empty list of {role, content} objects")
    if len(value) > MAX_MESSAGES:
        raise InvalidInput(f"messages has {len(value)} entries; the limit is {MAX_MESSAGES}")
    checked = []
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            raise InvalidInput(f"messages[{index}] must be an object with role and content")
        role = message.get("role")
        if role == "developer":  # OpenAI's newer name for the system role
            role = "system"
        if role not in ROLES:
            raise InvalidInput(f"messages[{index}].role must be one of {list(ROLES)}, got {str(role)[:40]!r}")
        checked.append({"role": role, "content": _text(message.get("content"), index)})
    return checked


def _text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidInput(f"messages[{index}].content: this model takes text parts only")
            parts.append(part["text"])
        return "".join(parts)
    raise InvalidInput(f"messages[{index}].content must be a string or a list of text parts")
