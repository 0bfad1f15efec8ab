"""OpenAI-compatible routes under ``/openai/v1``, as KServe's Hugging Face runtime serves them.

- ``GET /openai/v1/models``: the generative models and text encoders this function serves;
- ``POST /openai/v1/chat/completions``: chat messages through the model's chat template;
- ``POST /openai/v1/completions``: a prompt as the model reads it;
- ``POST /openai/v1/embeddings``: a vector per text from a text encoder (``embedding:`` in its contract).

With ``"stream": true`` the answer is server-sent events, a ``chunk`` per piece of text as it is
generated and ``data: [DONE]`` at the end, so the official ``openai`` client works unchanged with
``base_url=".../openai/v1"``. What a request may ask is bounded by the contract's ``generation``
limits (:mod:`modelfn.runtime.generation`): ``max_tokens`` is capped, a prompt over the limit is a
400 that names it, ``n`` is 1.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from modelfn.errors import InvalidInput, ModelfnError, NotFound
from modelfn.http import VERSION_HEADER, Request, Response, event_stream, json_response, parse_json_object
from modelfn.runtime import generation

if TYPE_CHECKING:
    from modelfn.function import Servable
    from modelfn.runtime.predictors.genai import GenAIPredictor

log_name = "modelfn"


def models(function: Servable, request: Request) -> Response:
    """``GET /openai/v1/models``: every generative model of the function."""
    data = []
    for name in function.catalog():
        contract = function.member(name).contract()
        if contract.framework == "genai" or contract.embedding is not None:
            data.append({"id": name, "object": "model", "created": 0, "owned_by": "modelfn"})
    return json_response({"object": "list", "data": data})


def chat_completions(function: Servable, request: Request) -> Response:
    """``POST /openai/v1/chat/completions``."""
    from modelfn.runtime.chat_template import checked_messages

    body, name, predictor, version = _target(function, request)
    messages = checked_messages(body.get("messages"))
    prompt = predictor.chat_prompt(messages)
    return _answer(body, name, version, predictor, prompt, chat=True)


def completions(function: Servable, request: Request) -> Response:
    """``POST /openai/v1/completions``."""
    body, name, predictor, version = _target(function, request)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidInput("prompt must be a string (or a list of one string)")
    return _answer(body, name, version, predictor, prompt, chat=False)


def embeddings(function: Servable, request: Request) -> Response:
    """``POST /openai/v1/embeddings``: ``input`` a string or a list of strings; floats, or base64 (the
    ``openai`` client's default)."""
    import base64

    from modelfn.runtime.embedding import checked_texts

    body = parse_json_object(request.body, function.settings)
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidInput("model must name the model to use (GET /openai/v1/models lists them)")
    member = function.member(name[:128])
    if member.contract().embedding is None:
        raise NotFound(f"model {name[:100]!r} is not a text encoder (its contract has no `embedding:`)")
    given = body.get("input")
    texts = [given] if isinstance(given, str) else checked_texts(given, "input")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise InvalidInput("encoding_format must be float or base64")
    model = member.model()
    embedder = model.embedder
    wanted = body.get("dimensions")
    if wanted is not None and wanted != embedder.dimensions:
        raise InvalidInput(f"dimensions: this model's vectors have {embedder.dimensions}; it cannot give {wanted!r}")
    inputs, tokens = embedder.tokenize(texts)
    outputs = member.run(lambda: model.infer(inputs), inline=model.interruptible(hooks=False))
    vectors = embedder.vectors(outputs, inputs)
    data = [
        {"object": "embedding", "index": index,
         "embedding": base64.b64encode(vector.astype("<f4").tobytes()).decode() if encoding == "base64" else vector}
        for index, vector in enumerate(vectors)
    ]  # fmt: skip
    answer = {"object": "list", "data": data, "model": name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return json_response(answer, headers={VERSION_HEADER: model.contract.version})


def _target(function: Servable, request: Request) -> tuple[dict[str, Any], str, GenAIPredictor, str]:
    body = parse_json_object(request.body, function.settings)
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidInput("model must name the model to use (GET /openai/v1/models lists them)")
    member = function.member(name[:128])
    if member.contract().framework != "genai":
        raise NotFound(f"model {name[:100]!r} is not a generative model; use /v2/models/{name[:100]}/infer")
    model = member.model()
    return body, name, model.predictor, model.contract.version  # type: ignore[return-value]  # a genai predictor


def _answer(
    body: dict[str, Any], name: str, version: str, predictor: GenAIPredictor, prompt: str, *, chat: bool
) -> Response:
    if body.get("n", 1) != 1:
        raise InvalidInput("n must be 1: one answer per request")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidInput("stream must be true or false")
    tokens = body.get("max_completion_tokens") if chat and "max_completion_tokens" in body else body.get("max_tokens")
    opts = generation.options(predictor.limits, max_tokens=tokens, temperature=body.get("temperature"),
                              top_p=body.get("top_p"), top_k=body.get("top_k"), seed=body.get("seed"),
                              stop=body.get("stop"))  # fmt: skip
    ids = predictor.prompt_ids(prompt)
    finish = generation.Finish()
    deadline = time.monotonic() + predictor.timeout_s
    # The slot is taken here: a full instance answers 429 now, not in the middle of a stream.
    pieces = predictor.stream(ids, opts, deadline=deadline, finish=finish)
    kind = "chat.completion" if chat else "text_completion"
    head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", "created": int(time.time()), "model": name}
    headers = {VERSION_HEADER: version}
    if not stream:
        text = "".join(pieces)
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish.reason, "logprobs": None}
        choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
        answer = {**head, "object": kind, "choices": [choice], "usage": _usage(len(ids), finish.tokens)}
        return json_response(answer, headers=headers)
    options = body.get("stream_options")
    usage = isinstance(options, dict) and options.get("include_usage") is True
    events = _events(pieces, {**head, "object": f"{kind}.chunk" if chat else kind}, chat, finish, len(ids), usage)
    return event_stream(events, headers)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _events(pieces: Iterator[str], head: dict[str, Any], chat: bool, finish: generation.Finish, prompt: int,
            usage: bool) -> Iterator[bytes]:  # fmt: skip
    """The chunks of a streamed answer, each a server-sent event; closing this closes the generation."""

    def chunk(text: str | None, reason: str | None, *, role: bool = False) -> bytes:
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": reason, "logprobs": None}
        return _event({**head, "choices": [choice]})

    try:
        if chat:
            yield chunk(None, None, role=True)
        for text in pieces:
            yield chunk(text, None)
        yield chunk(None if chat else "", finish.reason)
        if usage:
            yield _event({**head, "choices": [], "usage": _usage(prompt, finish.tokens)})
    except ModelfnError as exc:  # after the status line: said as an event, as OpenAI's servers do
        yield _event({"error": {"message": exc.message if exc.public else exc.public_message, "code": exc.status}})
    except Exception:
        import logging

        logging.getLogger(log_name).exception("generation failed mid-stream")
        yield _event({"error": {"message": "internal error: the model failed; see the function's log", "code": 500}})
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()  # the client went away (or the stream ended): the generation stops and gives its slot back
    yield b"data: [DONE]\n\n"


def _event(value: Any) -> bytes:
    return b"data: " + orjson.dumps(value) + b"\n\n"
