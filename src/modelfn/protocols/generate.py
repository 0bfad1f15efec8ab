"""Triton's generate extension: ``POST /v2/models/{name}[/versions/{version}]/generate`` and ``.../generate_stream``.

Triton documents the request as a JSON object of the model's inputs and its settings, either at the top
level (``{"text_input": "...", "max_tokens": 20}``) or under ``"parameters"``. ``generate`` answers one
object, ``{"model_name", "model_version", "text_output"}``; ``generate_stream`` answers server-sent events,
one such object per piece of text as it is generated. The extension is provisional in Triton; modelfn
follows its documented shapes, and the contract's ``generation`` limits bound every request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson

from modelfn.errors import InvalidInput, ModelfnError
from modelfn.http import VERSION_HEADER, Request, Response, event_stream, json_response, parse_json_object
from modelfn.runtime import generation

if TYPE_CHECKING:
    from modelfn.function import Servable
    from modelfn.runtime.predictors.genai import GenAIPredictor

#: The settings a request may give, at its top level or under ``parameters``.
SETTINGS = ("max_tokens", "temperature", "top_p", "top_k", "seed", "stop")


def generate(function: Servable, request: Request, name: str, version: str | None = None) -> Response:
    """``POST /v2/models/{name}/generate``: the whole answer in one object."""
    head, pieces = _start(function, request, name, version)
    return json_response({**head, "text_output": "".join(pieces)}, headers={VERSION_HEADER: head["model_version"]})


def generate_stream(function: Servable, request: Request, name: str, version: str | None = None) -> Response:
    """``POST /v2/models/{name}/generate_stream``: an event per piece of text."""
    head, pieces = _start(function, request, name, version)
    return event_stream(_events(head, pieces), {VERSION_HEADER: head["model_version"]})


def _start(function: Servable, request: Request, name: str, version: str | None) -> tuple[dict[str, str], Any]:
    member = function.member(name, version)
    if member.contract().framework != "genai":
        raise InvalidInput(f"model {name!r} does not generate text; use /v2/models/{name}/infer")
    body = parse_json_object(request.body, function.settings)
    text = body.get("text_input")
    if not isinstance(text, str):
        raise InvalidInput("text_input must be a string: the prompt")
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidInput("parameters must be an object")
    known = {"stream", "stop_words", "bad_words", *SETTINGS}
    unknown = sorted(set(body) - known - {"text_input", "parameters"} | set(parameters) - known)
    if unknown:
        raise InvalidInput(f"unknown field(s) {unknown[:5]}; this model takes text_input and {list(SETTINGS)}")
    chosen = {key: parameters.get(key, body.get(key)) for key in SETTINGS}
    # TensorRT-LLM's ensemble, in Triton's own examples, takes stop_words and bad_words beside them.
    stop_words = parameters.get("stop_words", body.get("stop_words"))
    if stop_words and chosen["stop"] is None:
        chosen["stop"] = stop_words
    if parameters.get("bad_words", body.get("bad_words")):
        raise InvalidInput("bad_words is not supported by this model; send an empty string or leave it out")
    model = member.model()
    predictor: GenAIPredictor = model.predictor  # type: ignore[assignment]  # framework genai
    opts = generation.options(predictor.limits, **chosen)
    ids = predictor.prompt_ids(text)
    finish = generation.Finish()
    pieces = predictor.stream(ids, opts, deadline=time.monotonic() + predictor.timeout_s, finish=finish)
    return {"model_name": model.contract.name, "model_version": model.contract.version}, pieces


def _events(head: dict[str, str], pieces: Any) -> Iterator[bytes]:
    try:
        for text in pieces:
            yield b"data: " + orjson.dumps({**head, "text_output": text}) + b"\n\n"
    except ModelfnError as exc:  # after the status line: said as an event, as Triton does
        yield b"data: " + orjson.dumps({"error": exc.message if exc.public else exc.public_message}) + b"\n\n"
    except Exception:
        logging.getLogger("modelfn").exception("generation failed mid-stream")
        yield b'data: {"error": "internal error: the model failed; see the function\'s log"}\n\n'
    finally:
        pieces.close()  # the client went away (or the answer ended): the generation stops, its slot is free
