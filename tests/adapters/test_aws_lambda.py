"""The Lambda adapter, called with real API Gateway and function URL event documents.

There is no local Lambda runtime without Docker; the handler is the unit Lambda calls, so it is
called directly with the event shapes AWS documents (payload 1.0 and 2.0), against the real
digits model.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import DIGITS, ROOT

from modelfn.adapters.aws_lambda import MAX_RESPONSE_BYTES, lambda_function, to_lambda_result
from modelfn.http import Response
from modelfn.settings import Settings

IMAGE = [[0.0] * 8] * 8


def rest_event(method: str, path: str, body: str | None = None, headers: dict | None = None, **extra) -> dict:
    """API Gateway REST API proxy integration, payload 1.0."""
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": None,
        "queryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "requestContext": {"requestId": "r-1", "stage": "prod", "identity": {"sourceIp": "10.0.0.1"}},
        "body": body,
        "isBase64Encoded": False,
        **extra,
    }


def http_event(method: str, raw_path: str, body: str | None = None, stage: str = "$default", **extra) -> dict:
    """HTTP API or function URL, payload 2.0 (header names arrive lowercased)."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "10.0.0.1"},
            "requestId": "r-2",
            "stage": stage,
        },
        "body": body,
        "isBase64Encoded": False,
        **extra,
    }


@pytest.fixture(scope="module")
def handler():
    return lambda_function(DIGITS / "main.py", settings=Settings(max_body_bytes=64 * 1024))


def decoded(result: dict) -> dict:
    assert not result["isBase64Encoded"]
    return json.loads(result["body"])


def test_rest_api_event_predicts(handler) -> None:
    body = json.dumps({"image": IMAGE})
    result = handler(rest_event("POST", "/predict", body, {"Content-Type": "application/json"}), None)
    assert result["statusCode"] == 200
    assert result["headers"]["X-Model-Version"] == "1"
    assert decoded(result)["digit"] in range(10)


def test_http_api_event_with_a_named_stage_routes_without_it(handler) -> None:
    body = json.dumps({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]})
    result = handler(http_event("POST", "/prod/v2/models/digits/infer", body, stage="prod"), None)
    assert result["statusCode"] == 200
    assert decoded(result)["model_name"] == "digits"


def test_function_url_health_and_metadata(handler) -> None:
    assert handler(http_event("GET", "/v2/health/live"), None)["statusCode"] == 200
    metadata = decoded(handler(http_event("GET", "/v2/models/digits"), None))
    assert metadata["inputs"][0]["name"] == "pixels"


def test_binary_tensors_travel_base64_both_ways(handler) -> None:
    """OIP binary extension: API Gateway base64-encodes the body in, Lambda base64-encodes the answer out."""
    pixels = np.zeros((1, 64), dtype=np.float32)
    header = json.dumps({
        "inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "parameters": {"binary_data_size": 256}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
    }).encode()  # fmt: skip
    event = rest_event(
        "POST",
        "/v2/models/digits/infer",
        base64.b64encode(header + pixels.tobytes()).decode(),
        {"content-type": "application/octet-stream", "inference-header-content-length": str(len(header))},
        isBase64Encoded=True,
    )
    result = handler(event, None)
    assert result["statusCode"] == 200 and result["isBase64Encoded"]
    raw = base64.b64decode(result["body"])
    length = int(result["headers"]["Inference-Header-Content-Length"])
    answer = json.loads(raw[:length])
    size = answer["outputs"][0]["parameters"]["binary_data_size"]
    probabilities = np.frombuffer(raw[length : length + size], dtype=np.float32)
    assert probabilities.shape == (10,) and abs(float(probabilities.sum()) - 1.0) < 1e-4


@pytest.mark.parametrize(
    ("event", "status", "fragment"),
    [
        ({"source": "aws.events", "detail-type": "Scheduled Event"}, 400, "not an HTTP event"),
        ("a string", 400, "not an HTTP event"),
        (rest_event("POST", "/predict", "x" * 70_000), 413, "over the limit of 65536 bytes"),
        (rest_event("POST", "/predict", "A" * 100_000, isBase64Encoded=True), 413, "over the limit"),
        (rest_event("POST", "/predict", "not base64!", isBase64Encoded=True), 400, "not valid base64"),
        (rest_event("POST", "/predict", '{"image": [1, 2'), 400, "not valid JSON"),
        (rest_event("POST", "/predict", "{}", headers=["not", "a", "dict"]), 400, "headers must be an object"),
        ({"requestContext": {}, "httpMethod": "GET"}, 400, "no method or path"),
        (rest_event("GET", "/v2/models/other"), 404, "other"),
    ],
    ids=["schedule-event", "not-a-dict", "too-large", "too-large-base64", "bad-base64", "bad-json", "bad-headers",
         "no-path", "unknown-model"],
)  # fmt: skip
def test_bad_events_get_a_json_error_naming_the_problem(handler, event, status, fragment) -> None:
    result = handler(event, None)
    assert result["statusCode"] == status
    assert fragment in decoded(result)["error"]


def test_an_answer_over_lambdas_payload_limit_is_a_clear_413() -> None:
    big = Response(200, b"[" + b"0," * (MAX_RESPONSE_BYTES // 2) + b"0]")
    result = to_lambda_result(big)
    assert result["statusCode"] == 413
    assert "Lambda returns at most" in json.loads(result["body"])["error"]


def test_a_group_function_serves_each_member() -> None:
    group = lambda_function(ROOT / "functions" / "digits-ensemble", models=["ensemble", "pca", "logreg", "mlp"])
    body = json.dumps({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]})
    for model in ("ensemble", "mlp"):
        result = group(http_event("POST", f"/v2/models/{model}/infer", body), None)
        assert result["statusCode"] == 200, result["body"]


@pytest.mark.parametrize("prefetch", ["1", "0"])
def test_prefetch_loads_during_init(prefetch) -> None:
    """In a fresh interpreter (the model cache is per process): loaded at import only with prefetch."""
    script = (
        "from modelfn.adapters.aws_lambda import lambda_function\n"
        f"handler = lambda_function({str(DIGITS / 'main.py')!r})\n"
        "print(handler.modelfn_function.ready())\n"
    )
    env = {**os.environ, "MODELFN_PREFETCH": prefetch, "MODELFN_LOG_LEVEL": "WARNING"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ("True" if prefetch == "1" else "False")


def test_a_streamed_answer_is_generated_whole_and_says_it_was_buffered() -> None:
    """Lambda's Python runtime returns one result: functions/chat's stream is read to its end into it."""
    chat = lambda_function(ROOT / "functions" / "chat", settings=Settings())
    body = {"model": "chat", "prompt": "<|user|>hello<|assistant|>", "stream": True}
    result = chat(http_event("POST", "/openai/v1/completions", json.dumps(body)), None)
    assert result["statusCode"] == 200 and result["headers"]["X-Modelfn-Streaming"] == "buffered"
    assert result["headers"]["Content-Type"] == "text/event-stream" and not result["isBase64Encoded"]
    events = [event for event in result["body"].split("\n\n") if event]
    assert len(events) > 5 and events[-1] == "data: [DONE]"
    text = "".join(json.loads(event[6:])["choices"][0]["text"] for event in events[:-1])
    assert text.startswith("Hello! I answer questions about modelfn")
