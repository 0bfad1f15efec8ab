"""TF Serving REST predict API, in-process."""

from __future__ import annotations

import numpy as np
import pytest


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


def test_model_status(digits_client) -> None:
    digits_client.post("/v1/models/digits:predict", json={"instances": [[0] * 64]})
    status = digits_client.get("/v1/models/digits").get_json()
    assert status["model_version_status"][0] == {
        "version": "1",
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }


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
