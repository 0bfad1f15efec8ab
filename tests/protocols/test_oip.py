"""Open Inference Protocol v2 through functions-framework's real Flask app (in-process)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import requests
from conftest import make_client
from models import ONNX_TYPES, write_echo_function
from test_tensors import VALUES


def infer_body(x: np.ndarray, **extra) -> dict:
    return {
        "inputs": [{"name": "pixels", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
        **extra,
    }


def test_health_and_server_metadata(digits_client) -> None:
    assert digits_client.get("/v2/health/live").get_json() == {"live": True}
    assert digits_client.get("/v2").get_json() == {
        "name": "modelfn",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data", "classification"],
    }


def test_model_metadata_comes_from_the_contract(digits_client) -> None:
    for path in ("/v2/models/digits", "/v2/models/digits/versions/1"):
        meta = digits_client.get(path).get_json()
        assert meta["name"] == "digits" and meta["versions"] == ["1"] and meta["platform"] == "onnx_onnxv1"
        assert meta["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]
        assert [o["name"] for o in meta["outputs"]] == ["probabilities", "label"]


def test_heldout_set_flat_and_nested(digits_client, heldout) -> None:
    x, y = heldout
    flat = digits_client.post("/v2/models/digits/infer", json=infer_body(x, id="batch-1"))
    assert flat.status_code == 200
    body = flat.get_json()
    assert body["id"] == "batch-1" and body["model_name"] == "digits" and body["model_version"] == "1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["datatype"] == "INT64" and outputs["label"]["shape"] == [360]
    assert outputs["probabilities"]["shape"] == [360, 10]
    labels = np.array(outputs["label"]["data"])
    assert (labels == y).mean() >= 0.95

    nested = {"inputs": [{"name": "pixels", "shape": [360, 64], "datatype": "FP32", "data": x.tolist()}]}
    again = digits_client.post("/v2/models/digits/versions/1/infer", json=nested).get_json()
    assert {o["name"]: o["data"] for o in again["outputs"]}["label"] == outputs["label"]["data"]


def test_outputs_filter_and_no_id(digits_client, heldout) -> None:
    x, _ = heldout
    body = digits_client.post("/v2/models/digits/infer", json=infer_body(x[:4], outputs=[{"name": "label"}])).get_json()
    assert "id" not in body
    assert [o["name"] for o in body["outputs"]] == ["label"]


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v2/models/digits/infer", b"{not json", 400, "not valid JSON"),
        ("/v2/models/digits/infer", b"", 400, "the body is empty"),
        ("/v2/models/digits/infer", b"[1]", 400, "must be a JSON object"),
        ("/v2/models/digits/infer", {"inputs": []}, 400, "`inputs` must be a non-empty list"),
        ("/v2/models/digits/infer", {"inputs": [{"name": "pixels"}]}, 400, "missing shape, datatype, data"),
        (
            "/v2/models/digits/infer",
            {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0] * 63}]},
            400,
            "needs 64 elements, data has 63",
        ),
        (
            "/v2/models/digits/infer",
            {"inputs": [{"name": "pixels", "shape": [1, 63], "datatype": "FP32", "data": [0] * 63}]},
            400,
            "does not fit the model's [-1, 64]",
        ),
        (
            "/v2/models/digits/infer",
            {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP64", "data": [0] * 64}]},
            400,
            "datatype FP64, the model expects FP32",
        ),
        (
            "/v2/models/digits/infer",
            {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FLOAT", "data": [0] * 64}]},
            400,
            "unknown datatype 'FLOAT'",
        ),
        (
            "/v2/models/digits/infer",
            {"inputs": [{"name": "image", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}]},
            400,
            "unknown input(s) ['image']",
        ),
        (
            "/v2/models/digits/infer",
            {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}] * 2},
            400,
            "appears more than once",
        ),
        (
            "/v2/models/digits/infer",
            {
                "inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}],
                "outputs": [{"name": "label"}, {"name": "label", "parameters": {"binary_data": True}}],
            },
            400,
            "output 'label' is requested more than once",
        ),
        ("/v2/models/digits/infer", {"id": 7, "inputs": []}, 400, "`id` must be a string"),
        (
            "/v2/models/digits/infer",
            {
                "inputs": [
                    {"name": "pixels", "shape": [1, 64], "datatype": "FP32", "parameters": {"binary_data_size": 256}}
                ]
            },
            400,
            "needs the Inference-Header-Content-Length header",
        ),
        (
            "/v2/models/digits/infer",
            {
                "inputs": [
                    {
                        "name": "pixels",
                        "shape": [1, 64],
                        "datatype": "FP32",
                        "data": [0] * 64,
                        "parameters": {"shared_memory_region": "r0"},
                    }
                ]
            },
            400,
            "extension this server does not offer",
        ),
        (
            "/v2/models/digits/infer",
            {
                "inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}],
                "outputs": [{"name": "label", "parameters": {"classification": 3}}],
            },
            400,
            "output 'label': classification needs a float output of shape [classes] or [-1, classes]",
        ),
        (
            "/v2/models/digits/infer",
            {
                "inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}],
                "outputs": [{"name": "probabilities", "parameters": {"classification": 11}}],
            },
            400,
            "classification must be a class count from 1 to 10",
        ),
        (
            "/v2/models/digits/infer",
            {
                "inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}],
                "parameters": {"classification": 3},
            },
            400,
            "'classification' asks for an extension",  # on outputs only, as Triton defines it
        ),
        (
            "/v2/models/digits/infer",
            {
                "inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}],
                "outputs": [{"name": "logits"}],
            },
            400,
            "unknown output(s) ['logits']",
        ),
        (
            "/v2/models/digits/infer",
            {"inputs": [{"name": "pixels", "shape": [4096, 4096], "datatype": "FP32", "data": []}]},
            413,
            "the limit is",
        ),
        ("/v2/models/mnist/infer", {"inputs": []}, 404, "model 'mnist' not found; this function serves 'digits'"),
        ("/v2/models/digits/versions/9/infer", {"inputs": []}, 404, "has no version '9'; available: '1'"),
        ("/v3/anything", {}, 404, "no route for POST /v3/anything"),
    ],
)
def test_bad_requests_get_a_clear_json_error(digits_client, path, body, status, message) -> None:
    if isinstance(body, bytes):
        response = digits_client.post(path, data=body)
    else:
        response = digits_client.post(path, json=body)
    assert response.status_code == status, response.data
    assert response.is_json and message in response.get_json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("GET", "/v2/models/digits/infer", "POST"), ("POST", "/v2/health/live", "GET"), ("DELETE", "/predict", "POST")],
)
def test_wrong_method_is_405_with_allow(digits_client, method, path, allowed) -> None:
    response = digits_client.open(path, method=method)
    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert f"use {allowed}" in response.get_json()["error"]


@pytest.fixture(scope="module")
def echo_client(tmp_path_factory):
    return make_client(write_echo_function(tmp_path_factory.mktemp("echo") / "echo"))


@pytest.mark.parametrize("datatype", ONNX_TYPES)
def test_every_datatype_through_onnx_runtime(echo_client, datatype) -> None:
    """Each datatype goes JSON -> numpy -> ONNX Runtime -> numpy -> JSON unchanged."""
    inputs = []
    for other in ONNX_TYPES:
        values = VALUES[other] if other == datatype else [VALUES[other][0]] * 2
        inputs.append({"name": f"in_{other}", "shape": [1, 2], "datatype": other, "data": values})
    response = echo_client.post(
        "/v2/models/echo/infer", json={"inputs": inputs, "outputs": [{"name": f"out_{datatype}"}]}
    )
    assert response.status_code == 200, response.data
    (output,) = response.get_json()["outputs"]
    assert output == {"name": f"out_{datatype}", "datatype": datatype, "shape": [1, 2], "data": VALUES[datatype]}


def test_the_repository_index_lists_each_model_with_its_state(tmp_path) -> None:
    """Triton's ``POST /v2/repository/index``: tritonclient's ``get_model_repository_index`` reads it."""
    import tritonclient.http as triton
    from helpers import DIGITS, running

    with running(DIGITS, tmp_path / "serve.log") as server:
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        assert client.get_model_repository_index() == [
            {"name": "digits", "version": "1", "state": "UNAVAILABLE",
             "reason": "not loaded yet; the first request or a readiness probe loads it"}
        ]  # fmt: skip
        ready = requests.post(f"{server.url}/v2/repository/index", json={"ready": True}, timeout=60)
        assert ready.status_code == 200 and ready.json() == []
        client.is_model_ready("digits")  # the readiness probe starts the load
        deadline = time.monotonic() + 120
        while not client.is_model_ready("digits") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get_model_repository_index() == [{"name": "digits", "version": "1", "state": "READY"}]
        unset = requests.post(f"{server.url}/v2/repository/index", json={"ready": None}, timeout=60)
        assert unset.status_code == 200 and len(unset.json()) == 1  # null, as clients dump unset fields: all
        bad = requests.post(f"{server.url}/v2/repository/index", json={"ready": "yes"}, timeout=60)
        assert bad.status_code == 400 and "`ready` must be true or false" in bad.json()["error"]


def test_classification_answers_the_top_classes_as_triton_does(digits_server, heldout) -> None:
    """Triton's classification extension through tritonclient (``class_count``), binary and JSON."""
    import tritonclient.http as triton

    x, _ = heldout
    client = triton.InferenceServerClient(digits_server.url.removeprefix("http://"))
    tensor = triton.InferInput("pixels", [4, 64], "FP32")
    tensor.set_data_from_numpy(x[:4])
    scores = client.infer("digits", [tensor], outputs=[triton.InferRequestedOutput("probabilities")])
    probabilities = scores.as_numpy("probabilities")
    for binary_data in (True, False):
        asked = triton.InferRequestedOutput("probabilities", binary_data=binary_data, class_count=3)
        top = client.infer("digits", [tensor], outputs=[asked]).as_numpy("probabilities")
        assert top.shape == (4, 3)
        for row, classes in zip(probabilities, top, strict=True):
            entries = [item.decode() if isinstance(item, bytes) else item for item in classes]
            indices = [int(entry.split(":")[1]) for entry in entries]
            assert indices == list(np.argsort(-row, kind="stable")[:3])
            assert [float(entry.split(":")[0]) for entry in entries] == pytest.approx(row[indices], abs=1e-6)


def test_a_body_of_binary_data_alone_is_the_one_input(digits_server, heldout) -> None:
    """Triton's binary extension: ``Inference-Header-Content-Length: 0`` and the input's bytes as the whole body."""
    x, _ = heldout
    url = f"{digits_server.url}/v2/models/digits/infer"
    headers = {"Inference-Header-Content-Length": "0", "Content-Type": "application/octet-stream"}
    raw = requests.post(url, data=x[:3].astype("<f4").tobytes(), headers=headers, timeout=60)
    tensor = {"name": "pixels", "shape": [3, 64], "datatype": "FP32", "data": x[:3].ravel().tolist()}
    as_json = requests.post(url, json={"inputs": [tensor]}, timeout=60)
    assert raw.status_code == 200, raw.text
    length = int(raw.headers["Inference-Header-Content-Length"])  # answered in binary, as Triton answers it
    outputs, tail = json.loads(raw.content[:length])["outputs"], raw.content[length:]
    expected = {o["name"]: o for o in as_json.json()["outputs"]}
    for output in outputs:
        size = output["parameters"]["binary_data_size"]
        dtype = "<f4" if output["datatype"] == "FP32" else "<i8"
        data, tail = np.frombuffer(tail[:size], dtype=dtype), tail[size:]
        assert output["shape"] == expected[output["name"]]["shape"]
        assert data.tolist() == pytest.approx(expected[output["name"]]["data"])
    odd = requests.post(url, data=b"\0" * 255, headers=headers, timeout=60)  # not a whole number of rows
    assert odd.status_code == 400 and "not a whole number of FP32 [-1, 64] tensors" in odd.json()["error"]


def test_tritonclients_aio_client_infers_and_reads_metadata(digits_server, heldout) -> None:
    """tritonclient's asyncio HTTP client (aiohttp), as an async caller uses it."""
    import asyncio

    import tritonclient.http.aio as triton_aio
    from tritonclient.http import InferInput, InferRequestedOutput

    x, _ = heldout

    async def call() -> tuple[dict, np.ndarray, bool]:
        client = triton_aio.InferenceServerClient(digits_server.url.removeprefix("http://"))
        try:
            tensor = InferInput("pixels", [2, 64], "FP32")
            tensor.set_data_from_numpy(x[:2])
            result = await client.infer("digits", [tensor], outputs=[InferRequestedOutput("label")])
            return await client.get_model_metadata("digits"), result.as_numpy("label"), await client.is_server_ready()
        finally:
            await client.close()

    metadata, labels, ready = asyncio.run(call())
    assert metadata["name"] == "digits" and metadata["inputs"][0]["name"] == "pixels"
    assert labels.shape == (2,) and labels.dtype == np.int64 and ready
