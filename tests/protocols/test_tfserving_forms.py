"""TF Serving's REST request forms, taken from its REST API document, against a model with many inputs.

Source: TensorFlow Serving, "RESTful API", sections "Request format" (row and columnar), "Encoding
binary values" (``{"b64": ...}``) and "JSON conformity" (``NaN`` and ``Infinity``). The document's
examples use a model with inputs ``tag``, ``signal`` and ``sensor``; here the echo model (every
datatype, an input ``in_<T>`` of shape ``[-1, 2]`` each, answered as ``out_<T>``) stands in for it,
so every value can be checked on the way back.
"""

from __future__ import annotations

import base64

import pytest
from conftest import make_client
from models import ONNX_TYPES, write_echo_function

#: One instance's value per input: two elements each, as the echo model's [-1, 2] shape takes.
VALUES = {"BOOL": [True, False], "FP16": [0.5, 1.5], "FP32": [0.25, -2.0], "FP64": [1e-3, 3.5], "BYTES": ["a", "b"]}


def value(datatype: str, row: int) -> list:
    return VALUES.get(datatype, [row, row + 1])


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    return make_client(write_echo_function(tmp_path_factory.mktemp("echo") / "echo"))


def test_row_format_with_named_inputs_per_instance(echo) -> None:
    """'Request format', row: ``{"instances": [{"tag": ..., "signal": ..., "sensor": ...}, ...]}``."""
    instances = [{f"in_{t}": value(t, row) for t in ONNX_TYPES} for row in range(3)]
    response = echo.post("/v1/models/echo:predict", json={"instances": instances})
    assert response.status_code == 200, response.get_json()
    predictions = response.get_json()["predictions"]
    assert len(predictions) == 3
    for row, prediction in enumerate(predictions):
        assert prediction == {f"out_{t}": value(t, row) for t in ONNX_TYPES}


def test_columnar_format_with_named_inputs(echo) -> None:
    """'Request format', columnar: ``{"inputs": {"tag": [...], "signal": [...], "sensor": [...]}}``."""
    columns = {f"in_{t}": [value(t, 0), value(t, 1)] for t in ONNX_TYPES}
    response = echo.post("/v1/models/echo:predict", json={"inputs": columns})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["outputs"] == {f"out_{t}": [value(t, 0), value(t, 1)] for t in ONNX_TYPES}


def test_binary_values_are_b64_objects(echo) -> None:
    """'Encoding binary values': ``{"b64": "<base64>"}`` wherever a string input's value goes, rows and columns."""
    encoded = [{"b64": base64.b64encode(text.encode()).decode()} for text in ("hello", "world")]
    rows = [{**{f"in_{t}": value(t, 0) for t in ONNX_TYPES}, "in_BYTES": encoded}]
    by_rows = echo.post("/v1/models/echo:predict", json={"instances": rows})
    assert by_rows.status_code == 200, by_rows.get_json()
    assert by_rows.get_json()["predictions"][0]["out_BYTES"] == ["hello", "world"]
    columns = {**{f"in_{t}": [value(t, 0)] for t in ONNX_TYPES}, "in_BYTES": [encoded]}
    by_columns = echo.post("/v1/models/echo:predict", json={"inputs": columns})
    assert by_columns.status_code == 200, by_columns.get_json()
    assert by_columns.get_json()["outputs"]["out_BYTES"] == [["hello", "world"]]
    broken = [{**rows[0], "in_BYTES": [{"b64": "%%%"}, {"b64": "AA=="}]}]
    refused = echo.post("/v1/models/echo:predict", json={"instances": broken})
    assert refused.status_code == 400 and "not base64" in refused.get_json()["error"]


def test_non_finite_tokens_round_trip_through_a_float_input(echo) -> None:
    """'JSON conformity': ``NaN``, ``Infinity`` and ``-Infinity`` are accepted in requests."""
    others = ", ".join(f'"in_{t}": {value(t, 0)}'.replace("True", "true").replace("False", "false").replace("'", '"')
                       for t in ONNX_TYPES if t != "FP64")  # fmt: skip
    body = '{"instances": [{' + others + ', "in_FP64": [NaN, -Infinity]}]}'
    response = echo.post("/v1/models/echo:predict", data=body, content_type="application/json")
    assert response.status_code == 200, response.get_json()
