"""Protocols: each maps its wire format onto :class:`modelfn.function.ModelFunction`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelfn.routing import Router, route

if TYPE_CHECKING:
    from modelfn.http import Response

_MODEL = "{name}[/versions/{version}]"


_ROUTER: Router | None = None


class _Deferred:
    """A protocol module imported by the first request that needs it: ``_Deferred(m).f`` calls ``m.f``.

    An OIP request then imports OIP's modules only, not the webhooks', events' or page's
    (about 10 ms of a cold start on 2 vCPUs).
    """

    def __init__(self, module: str) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Callable[..., Response]:
        module = self._module
        found: list[Callable[..., Response]] = []  # the function itself, once its module is imported

        def handler(*args: Any, **kwargs: Any) -> Response:
            if not found:
                import importlib

                found.append(getattr(importlib.import_module(module), name))
            return found[0](*args, **kwargs)

        handler.__qualname__ = handler.__name__ = name
        return handler


def router() -> Router:
    """The routes, built on the first request (the protocol modules import numpy)."""
    global _ROUTER
    if _ROUTER is None:
        _ROUTER = build_router()
    return _ROUTER


def build_router() -> Router:
    """Every HTTP route of a function, with what ``/openapi.json`` says of it.

    Health routes are open (the platform's probes send no credentials); the server's own routes
    need any valid key; the others need a key for the model they name.
    """
    alexa, browser, dialogflow, generate, metrics, oip, openai, openapi, page, simple, tfserving = (
        _Deferred(f"modelfn.protocols.{name}")
        for name in ("alexa", "browser", "dialogflow", "generate", "metrics", "oip", "openai", "openapi", "page",
                     "simple", "tfserving")
    )  # fmt: skip
    return Router(
        [
            route("GET", "/v2/health/live", oip.server_live, access="open",
                  summary="Liveness (OIP)", response="Live"),
            route("GET", "/v2/health/ready", oip.server_ready, access="open",
                  summary="Readiness (OIP); starts the model's load", response="Ready"),
            route("GET", "/v2", oip.server_metadata, access="server",
                  summary="Server metadata (OIP)", response="ServerMetadata"),
            route("POST", "/v2/repository/index", oip.repository_index, access="server",
                  summary="Every model, its version and state (Triton's repository index)", response="RepositoryIndex"),
            route("GET", "/openapi.json", openapi.document, access="server",
                  summary="This document", response="OpenAPI"),
            route("GET", "/", page.asset, access="open",
                  summary="The web page: draw, chat or send JSON to the models", response="Asset", media="text/html"),
            route("GET", "/page.js", page.asset, access="open",
                  summary="The web page's script", response="Asset", media="text/javascript"),
            route("GET", "/page.css", page.asset, access="open",
                  summary="The web page's style", response="Asset", media="text/css"),
            route("GET", "/browser/{asset}", browser.asset, access="open",
                  summary="The browser bundle: ONNX Runtime Web, models and hooks the page can run here",
                  response="Asset", media="application/octet-stream"),
            route("GET", "/metrics", metrics.scrape, access="server",
                  summary="Metrics in the Prometheus text format", response="Asset", media="text/plain"),
            route("GET", "/models", page.model_cards, access="server",
                  summary="Model cards: each model's documentation, example and page widget", response="ModelCards"),
            route("GET", f"/v2/models/{_MODEL}", oip.model_metadata,
                  summary="Model metadata (OIP)", response="ModelMetadata"),
            route("GET", f"/v2/models/{_MODEL}/ready", oip.model_ready,
                  summary="Model readiness (OIP); starts the model's load", response="ModelReady"),
            route("POST", f"/v2/models/{_MODEL}/infer", oip.infer,
                  summary="Inference (OIP, KServe V2)", request="InferenceRequest", response="InferenceResponse"),
            route("POST", f"/v2/models/{_MODEL}/generate", generate.generate,
                  summary="Generate text (Triton's generate extension)", request="GenerateRequest",
                  response="Generated"),
            route("POST", f"/v2/models/{_MODEL}/generate_stream", generate.generate_stream,
                  summary="Generate text as server-sent events (Triton's generate extension)",
                  request="GenerateRequest", response="Generated"),
            route("GET", f"/v1/models/{_MODEL}", tfserving.model_status,
                  summary="Model status (TF Serving)", response="ModelStatus"),
            route("POST", f"/v1/models/{_MODEL}:predict", tfserving.predict,
                  summary="Predict (TF Serving, KServe V1)", request="PredictRequest", response="PredictResponse"),
            route("POST", "/predict", simple.predict,
                  summary="The default model through its hooks", request="Payload", response="Answer"),
            route("POST", "/models/{name}/predict", simple.predict,
                  summary="A model through its hooks", request="Payload", response="Answer"),
            # The body names the model: the key check is for the function's default model, and a
            # several-model function's routes take only keys valid for every model.
            route("GET", "/openai/v1/models", openai.models, access="server",
                  summary="The generative models (OpenAI-compatible)", response="OpenAIModels"),
            route("POST", "/openai/v1/chat/completions", openai.chat_completions,
                  summary="Chat completion, streamed as server-sent events with stream: true (OpenAI-compatible)",
                  request="ChatCompletionRequest", response="ChatCompletion"),
            route("POST", "/openai/v1/completions", openai.completions,
                  summary="Text completion, streamed as server-sent events with stream: true (OpenAI-compatible)",
                  request="CompletionRequest", response="Completion"),
            route("POST", "/openai/v1/embeddings", openai.embeddings,
                  summary="Embeddings of texts from a text encoder (OpenAI-compatible)",
                  request="EmbeddingRequest", response="Embeddings"),
            route("POST", "/alexa", alexa.webhook, access="webhook",
                  summary="Alexa skill (the default model)", request="AlexaRequest", response="AlexaResponse"),
            route("POST", "/models/{name}/alexa", alexa.webhook, access="webhook",
                  summary="Alexa skill", request="AlexaRequest", response="AlexaResponse"),
            route("POST", "/dialogflow", dialogflow.webhook, access="webhook",
                  summary="Dialogflow ES/CX webhook (the default model)", request="DialogflowRequest",
                  response="DialogflowResponse"),
            route("POST", "/models/{name}/dialogflow", dialogflow.webhook, access="webhook",
                  summary="Dialogflow ES/CX webhook", request="DialogflowRequest", response="DialogflowResponse"),
        ]
    )  # fmt: skip
