"""TF Serving REST predict API, in-process."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_client

from modelfn.errors import InvalidInput


def test_row_format_heldout(digits_client, heldout) -> None:
    x, y = heldout
    response = digits_client.post("/v1/models/digits:predict", json={"instances": x.tolist()})
    assert response.status_code == 200
    predictions = response.get_json()["predictions"]
    assert len(predictions) == 360 and set(predictions[0]) == {"probabilities", "label"}
    assert (np.array([p["label"] for p in predictions]) == y).mean() >= 0.95


def test_columnar_format_and_version_path(digits_client, heldout) -> None:
    x, _ = heldout
    for body in (
        {"inputs": x[:5].tolist()},
        {"inputs": {"pixels": x[:5].tolist()}, "signature_name": "serving_default"},
    ):
        response = digits_client.post("/v1/models/digits/versions/1:predict", json=body)
        assert response.status_code == 200, response.data
        outputs = response.get_json()["outputs"]
        assert outputs["label"] == list(np.asarray(outputs["probabilities"]).argmax(axis=1))


def test_model_status_is_tf_servings_body_exactly(digits_client) -> None:
    """TF Serving's own test compares the whole body (tensorflow_model_server_test.py, testGetStatusREST)."""
    digits_client.post("/v1/models/digits:predict", json={"instances": [[0] * 64]})
    status = digits_client.get("/v1/models/digits").get_json()
    version = {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    assert status == {"model_version_status": [version]}


def test_model_status_for_kserve_v1_adds_its_readiness(function_copy, monkeypatch) -> None:
    monkeypatch.setenv("MODELFN_V1_MODEL_STATUS", "kserve")  # read once, when the function is built
    client = make_client(function_copy())
    first = client.get("/v1/models/digits")  # starts the load: 503 until it is ready, as KServe answers
    assert first.status_code in (200, 503) and first.get_json()["ready"] is (first.status_code == 200)
    client.post("/v1/models/digits:predict", json={"instances": [[0] * 64]})
    status = client.get("/v1/models/digits").get_json()
    assert status["name"] == "digits" and status["ready"] is True
    assert status["model_version_status"][0]["version"] == "1"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "exactly one of `instances`"),
        ({"instances": [[0] * 64], "inputs": [[0] * 64]}, 400, "exactly one of `instances`"),
        ({"instances": []}, 400, "non-empty list"),
        ({"instances": [[0] * 63]}, 400, "shape [1, 63] does not fit"),
        ({"instances": [["a"] * 64]}, 400, "must be numbers, got strings"),
        ({"inputs": {"image": [[0] * 64]}}, 400, "`inputs`: unknown input 'image'; the model takes ['pixels']"),
        ({"instances": [[0] * 64], "signature_name": "train"}, 400, "unknown signature_name 'train'"),
    ],
)
def test_bad_requests(digits_client, body, status, message) -> None:
    response = digits_client.post("/v1/models/digits:predict", json=body)
    assert response.status_code == status
    assert message in response.get_json()["error"]


def test_unknown_model(digits_client) -> None:
    response = digits_client.post("/v1/models/other:predict", json={"instances": [[0] * 64]})
    assert response.status_code == 404 and "not found" in response.get_json()["error"]


def test_an_instance_may_name_its_one_input(digits_client, heldout) -> None:
    """TF Serving's REST API: an instance is the value itself or an object keyed by input name."""
    x, _ = heldout
    named = digits_client.post("/v1/models/digits:predict", json={"instances": [{"pixels": r.tolist()} for r in x[:5]]})
    plain = digits_client.post("/v1/models/digits:predict", json={"instances": [r.tolist() for r in x[:5]]})
    assert named.status_code == 200, named.get_json()
    assert named.get_json() == plain.get_json()


def test_non_finite_tokens_are_read_as_numbers(digits_client) -> None:
    """TF Serving's JSON takes NaN and Infinity (its REST API document); the model decides what they mean."""
    row = "[" + ",".join(["NaN", "Infinity", "-Infinity"] + ["0"] * 61) + "]"
    body = '{"instances": [' + row + "]}"
    response = digits_client.post("/v1/models/digits:predict", data=body, content_type="application/json")
    assert response.status_code == 200, response.get_json()
    deep = '{"instances": ' + "[" * 100 + "NaN" + "]" * 100 + "}"  # the depth limit still holds
    refused = digits_client.post("/v1/models/digits:predict", data=deep, content_type="application/json")
    assert refused.status_code == 400 and "nests" in refused.get_json()["error"]


def test_b64_values_feed_a_bytes_input() -> None:
    """``{"b64": ...}`` objects, in rows and in columns, decoded for a BYTES input (the helpdesk takes text)."""
    import base64

    from modelfn.protocols.tfserving import _unwrap_b64

    text = base64.b64encode(b"how do I deploy?").decode()
    assert _unwrap_b64([{"b64": text}, [{"b64": text}]], "q") == ["how do I deploy?", ["how do I deploy?"]]
    for bad in ({"b64": "***"}, {"b64": text, "x": 1}, {"b64": 5}):
        with pytest.raises(InvalidInput):
            _unwrap_b64([bad], "q")
