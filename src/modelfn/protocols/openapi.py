"""``GET /openapi.json``: an OpenAPI 3.1 document of every route, built from the route table.

Paths, methods and access come from :func:`modelfn.protocols.build_router`; the
schemas below describe each protocol's bodies as the handlers read and write
them; the model names and versions are this function's own. Every error a route
can answer is listed with the ``{"error": ...}`` body that carries it, so a
client (or a fuzzer) can hold the server to the document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelfn import __version__
from modelfn.datatypes import NUMPY_DTYPES
from modelfn.http import Request, Response, json_response
from modelfn.routing import PARAMETERS, expand_template

if TYPE_CHECKING:
    from modelfn.function import Servable
    from modelfn.routing import Route

_STRING = {"type": "string"}
_SHAPE = {"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 16}
_DATATYPE = {"type": "string", "enum": list(NUMPY_DTYPES)}
_PARAMETERS = {"type": "object"}
_TENSOR_METADATA = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {"name": _STRING, "datatype": _DATATYPE, "shape": {"type": "array", "items": {"type": "integer"}}},
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": _STRING}},
    "Live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}, "reason": _STRING}},
    "Ready": {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}},
    "ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {"name": _STRING, "version": _STRING, "extensions": {"type": "array", "items": _STRING}},
    },
    "OpenAPI": {"type": "object", "required": ["openapi", "paths"]},
    "ModelMetadata": {
        "type": "object",
        "required": ["name", "versions", "platform", "inputs", "outputs"],
        "properties": {
            "name": _STRING,
            "versions": {"type": "array", "items": _STRING},
            "platform": _STRING,
            "inputs": {"type": "array", "items": _TENSOR_METADATA},
            "outputs": {"type": "array", "items": _TENSOR_METADATA},
        },
    },
    "ModelReady": {
        "type": "object",
        "required": ["name", "ready"],
        "properties": {"name": _STRING, "ready": {"type": "boolean"}},
    },
    "InferenceRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": _STRING,
            "parameters": _PARAMETERS,
            "inputs": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["name", "shape", "datatype"],
                    "properties": {
                        "name": _STRING,
                        "shape": _SHAPE,
                        "datatype": _DATATYPE,
                        "parameters": _PARAMETERS,
                        "data": {"type": "array"},
                    },
                },
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": _STRING, "parameters": _PARAMETERS},
                },
            },
        },
    },
    "InferenceResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": _STRING,
            "model_version": _STRING,
            "id": _STRING,
            "parameters": _PARAMETERS,
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "shape", "datatype"],
                    "properties": {
                        "name": _STRING,
                        "shape": {"type": "array", "items": {"type": "integer"}},
                        "datatype": _DATATYPE,
                        "parameters": _PARAMETERS,
                        "data": {"type": "array"},
                    },
                },
            },
        },
    },
    "ModelStatus": {
        "type": "object",
        "required": ["model_version_status"],
        "properties": {
            "model_version_status": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["version", "state"],
                    "properties": {"version": _STRING, "state": {"enum": ["AVAILABLE", "LOADING"]}},
                },
            }
        },
    },
    "PredictRequest": {
        "type": "object",
        "description": "Exactly one of `instances` (row format) or `inputs` (columnar format).",
        "properties": {"signature_name": _STRING, "instances": {"type": "array", "minItems": 1}, "inputs": {}},
    },
    "PredictResponse": {"type": "object", "properties": {"predictions": {"type": "array"}, "outputs": {}}},
    "Payload": {"description": "What the model's pre hook reads; without one, `{input name: nested values}`."},
    "Answer": {"description": "What the model's post hook returns; without one, `{output name: nested values}`."},
    "RepositoryIndex": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name", "version", "state"],
            "properties": {
                "name": _STRING,
                "version": _STRING,
                "state": {"enum": ["READY", "UNAVAILABLE"]},
                "reason": _STRING,
            },
        },
    },
    "ModelCards": {
        "type": "object",
        "required": ["models"],
        "properties": {
            "models": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "version", "description", "page"],
                    "properties": {
                        "name": _STRING,
                        "version": _STRING,
                        "description": _STRING,
                        "metrics": {"type": "object"},
                        "limitations": {"type": "array"},
                        "example": {},
                        "page": {"type": "object"},
                    },
                },
            }
        },
    },
    "AlexaRequest": {
        "type": "object",
        "description": "An Alexa request envelope, signed (`Signature-256`, `SignatureCertChainUrl`).",
        "required": ["version", "request"],
        "properties": {
            "version": _STRING,
            "session": {"type": "object"},
            "context": {"type": "object"},
            "request": {"type": "object"},
        },
    },
    "AlexaResponse": {
        "type": "object",
        "required": ["version", "response"],
        "properties": {"version": _STRING, "response": {"type": "object"}},
    },
    "DialogflowRequest": {
        "type": "object",
        "description": "A Dialogflow ES (`queryResult`) or CX (`fulfillmentInfo`, `sessionInfo`) webhook request.",
    },
    "DialogflowResponse": {
        "type": "object",
        "description": "ES: `fulfillmentText`, `fulfillmentMessages`; CX: `fulfillmentResponse`; both `payload`.",
        "properties": {
            "fulfillmentText": _STRING,
            "fulfillmentMessages": {"type": "array"},
            "fulfillmentResponse": {"type": "object"},
            "payload": {"type": "object"},
        },
    },
    "OpenAIModels": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {"object": _STRING, "data": {"type": "array", "items": {"type": "object"}}},
    },
    "ChatCompletionRequest": {
        "type": "object",
        "description": "OpenAI's chat completion request; `max_tokens` is capped by the contract, `n` is 1.",
        "required": ["model", "messages"],
        "properties": {"model": _STRING, "messages": {"type": "array", "items": {"type": "object"}},
                       "stream": {"type": "boolean"}, "max_tokens": {"type": "integer"},
                       "temperature": {"type": "number"}, "top_p": {"type": "number"}, "seed": {"type": "integer"},
                       "stop": {}},
    },
    "CompletionRequest": {
        "type": "object",
        "description": "OpenAI's completion request; `max_tokens` is capped by the contract, `n` is 1.",
        "required": ["model", "prompt"],
        "properties": {"model": _STRING, "prompt": {}, "stream": {"type": "boolean"},
                       "max_tokens": {"type": "integer"}, "temperature": {"type": "number"}},
    },
    "EmbeddingRequest": {
        "type": "object",
        "description": "OpenAI's embeddings request: `input` a string or a list of strings.",
        "required": ["model", "input"],
        "properties": {"model": _STRING, "input": {}, "dimensions": {"type": "integer"},
                       "encoding_format": {"type": "string", "enum": ["float", "base64"]}},
    },
    "Embeddings": {
        "type": "object",
        "required": ["object", "data", "model", "usage"],
        "properties": {"object": _STRING, "data": {"type": "array"}, "model": _STRING, "usage": {"type": "object"}},
    },
    "GenerateRequest": {
        "type": "object",
        "description": "Triton's generate request: the prompt, its settings at the top level or under `parameters`.",
        "required": ["text_input"],
        "properties": {"text_input": _STRING, "parameters": {"type": "object"}, "max_tokens": {"type": "integer"},
                       "temperature": {"type": "number"}},
    },
    "Generated": {
        "type": "object",
        "description": "The answer; `generate_stream` sends one per piece of text, as server-sent events.",
        "required": ["model_name", "model_version", "text_output"],
        "properties": {"model_name": _STRING, "model_version": _STRING, "text_output": _STRING},
    },
    "ChatCompletion": {
        "type": "object",
        "description": "A chat completion; with `stream: true`, `text/event-stream` chunks and `data: [DONE]`.",
        "required": ["id", "object", "choices"],
        "properties": {"id": _STRING, "object": _STRING, "model": _STRING, "choices": {"type": "array"},
                       "usage": {"type": "object"}},
    },
    "Completion": {
        "type": "object",
        "description": "A text completion; with `stream: true`, `text/event-stream` chunks and `data: [DONE]`.",
        "required": ["id", "object", "choices"],
        "properties": {"id": _STRING, "object": _STRING, "model": _STRING, "choices": {"type": "array"},
                       "usage": {"type": "object"}},
    },
}  # fmt: skip

#: Every error a route may answer, and when.
ERRORS = {
    "400": "The body or a tensor is invalid (the message says what and where); an Alexa request failed a check.",
    "401": "No valid API key (webhooks: no valid webhook credentials).",
    "403": "The API key does not cover this model.",
    "404": "No such route, model or version.",
    "405": "The route exists for other methods (see `Allow`).",
    "413": "The body, a tensor or a string is over its limit.",
    "415": "A body encoding that is not accepted.",
    "500": "The model failed; details are only in the function's log.",
    "503": "The model is loading, cannot be loaded, or is at capacity; retry after `Retry-After`.",
    "504": "The request's deadline passed.",
}


#: The answers of the routes that generate text.
GENERATIONS = ("ChatCompletion", "Completion", "Generated")


def document(function: Servable, request: Request) -> Response:
    """The OpenAPI document of this function's routes and models."""
    from modelfn.protocols import router

    return json_response(build(function, router().routes))


def build(function: Servable, routes: list[Route]) -> dict[str, Any]:
    catalog = function.catalog()
    names, versions = list(catalog), sorted(set(catalog.values()))
    parameters = {
        "name": {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": names}},
        "version": {"name": "version", "in": "path", "required": True, "schema": {"type": "string", "enum": versions}},
        "asset": {"name": "asset", "in": "path", "required": True, "schema": {"type": "string"}},
    }
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        for path in expand_template(route.template):
            operation = _operation(route, path, parameters)
            paths.setdefault(path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": f"modelfn function: {', '.join(names)}", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "webhookBasic": {"type": "http", "scheme": "basic"},
                "webhookSecret": {"type": "apiKey", "in": "header", "name": function.settings.dialogflow_secret_header},
                "alexaSignature": {"type": "apiKey", "in": "header", "name": "Signature-256"},
            },
        },
    }


def _operation(route: Route, path: str, parameters: dict[str, dict[str, Any]]) -> dict[str, Any]:
    doc = route.doc
    answer = {"$ref": f"#/components/schemas/{doc['response']}"}
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    media = doc.get("media", "application/json")
    if media != "application/json":
        answer = {"type": "string"}
    responses: dict[str, Any] = {"200": {"description": "OK", "content": {media: {"schema": answer}}}}
    if doc["response"] == "InferenceResponse":  # the binary tensor extension answers octet-stream
        responses["200"]["content"]["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    if doc["response"] in GENERATIONS:  # a stream answers server-sent events; a full instance, 429
        responses["200"]["content"]["text/event-stream"] = {"schema": {"type": "string"}}
        responses["429"] = {"description": "Every generation slot is streaming; retry after `Retry-After`.", **error}
    for status, description in ERRORS.items():
        responses[status] = {"description": description, **error}
    if doc["response"] in ("Live", "Ready", "ModelReady"):  # not live / not ready: the same body, 503
        either = {"anyOf": [answer, {"$ref": "#/components/schemas/Error"}]}
        responses["503"] = {"description": "Not live or not ready", "content": {"application/json": {"schema": either}}}
    operation: dict[str, Any] = {
        "operationId": _operation_id(route.method, path),
        "summary": doc["summary"],
        "responses": responses,
        "parameters": [parameters[name] for name in PARAMETERS if "{" + name + "}" in path],
    }
    if route.access == "open":
        operation["security"] = []
    elif route.access == "webhook":  # the platform's own proof: a signature (Alexa), basic auth or a secret
        operation["security"] = [{"webhookBasic": []}, {"webhookSecret": []}, {"alexaSignature": []}, {"bearer": []}]
    else:
        operation["security"] = [{"apiKey": []}, {"bearer": []}, {}]  # {}: when the function has no keys
    if "request" in doc:
        content: dict[str, Any] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{doc['request']}"}}}
        if doc["request"] == "Payload":  # files too, where the model's contract has `uploads:`
            files = {"type": "object", "additionalProperties": {"type": "string", "format": "binary"}}
            content["multipart/form-data"] = {"schema": files}
        operation["requestBody"] = {"required": True, "content": content}
    return operation


def _operation_id(method: str, path: str) -> str:
    words = [part.strip("{}").replace(":", "_") for part in path.split("/") if part]
    return "_".join([method.lower(), *words]) or method.lower()
