"""The binary tensor data extension, framed by hand, through functions-framework and ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_client
from models import ONNX_TYPES, write_echo_function, write_identity_function
from test_tensors import VALUES

from modelfn.protocols import binary

HEADER = "Inference-Header-Content-Length"


def framed(request: dict, *blobs: bytes) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(request).encode()
    return header + b"".join(blobs), {HEADER: str(len(header))}


def unframe(response) -> tuple[dict, bytes]:
    length = int(response.headers[HEADER])
    return json.loads(response.data[:length]), response.data[length:]


@pytest.fixture(scope="module")
def echo_client(tmp_path_factory):
    return make_client(write_echo_function(tmp_path_factory.mktemp("echo-binary") / "echo"))


@pytest.mark.parametrize("datatype", ONNX_TYPES)
def test_every_datatype_round_trips_in_binary(echo_client, datatype) -> None:
    inputs, blobs = [], []
    for other in ONNX_TYPES:
        values = VALUES[other] if other == datatype else [VALUES[other][0]] * 2
        array = np.array(values, dtype=object if other == "BYTES" else np.dtype(_numpy(other)))
        blob = binary.encode(array)
        blobs.append(blob)
        inputs.append(
            {"name": f"in_{other}", "shape": [1, 2], "datatype": other, "parameters": {"binary_data_size": len(blob)}}
        )
    body, headers = framed(
        {"inputs": inputs, "outputs": [{"name": f"out_{datatype}", "parameters": {"binary_data": True}}]}, *blobs
    )
    response = echo_client.post("/v2/models/echo/infer", data=body, headers=headers)
    assert response.status_code == 200, response.data
    meta, tail = unframe(response)
    (output,) = meta["outputs"]
    assert output["datatype"] == datatype and output["shape"] == [1, 2] and "data" not in output
    assert output["parameters"]["binary_data_size"] == len(tail)
    decoded = binary.decode(memoryview(tail), datatype, [2], "out")
    expected = np.array(VALUES[datatype], dtype=object if datatype == "BYTES" else _numpy(datatype))
    assert decoded.tolist() == expected.tolist()  # exact, at the datatype's own precision


def _numpy(datatype: str) -> str:
    from modelfn.datatypes import NUMPY_DTYPES

    return NUMPY_DTYPES[datatype]


def test_binary_in_json_out_and_request_level_default(digits_client, heldout) -> None:
    x, y = heldout
    blob = x.astype("<f4").tobytes()
    tensor = {
        "name": "pixels",
        "shape": list(x.shape),
        "datatype": "FP32",
        "parameters": {"binary_data_size": len(blob)},
    }
    body, headers = framed({"inputs": [tensor], "outputs": [{"name": "label"}]}, blob)
    response = digits_client.post("/v2/models/digits/infer", data=body, headers=headers)
    assert response.is_json and (np.array(response.get_json()["outputs"][0]["data"]) == y).mean() >= 0.95

    body, headers = framed({"inputs": [tensor], "parameters": {"binary_data_output": True}}, blob)
    meta, tail = unframe(digits_client.post("/v2/models/digits/infer", data=body, headers=headers))
    sizes = [o["parameters"]["binary_data_size"] for o in meta["outputs"]]
    assert sizes == [360 * 10 * 4, 360 * 8] and len(tail) == sum(sizes)
    labels = np.frombuffer(tail[sizes[0] :], dtype="<i8")
    assert (labels == y).mean() >= 0.95


@pytest.mark.parametrize(
    ("size", "tail", "header", "message"),
    [
        (256, b"\0" * 255, None, "only 255 bytes remain"),
        (255, b"\0" * 255, None, "needs 256 bytes, got 255"),
        (256, b"\0" * 300, None, "44 bytes of binary data follow the JSON but no input claims them"),
        (-1, b"", None, "binary_data_size must be a non-negative integer"),
        (256, b"\0" * 256, "99999", "must be a length between 1 and the body's"),
        (256, b"\0" * 256, "abc", "must be a length between 1 and the body's"),
    ],
)
def test_malformed_binary_framing(digits_client, size, tail, header, message) -> None:
    tensor = {"name": "pixels", "shape": [1, 64], "datatype": "FP32", "parameters": {"binary_data_size": size}}
    body, headers = framed({"inputs": [tensor]}, tail)
    if header is not None:
        headers[HEADER] = header
    response = digits_client.post("/v2/models/digits/infer", data=body, headers=headers)
    assert response.status_code == 400 and message in response.get_json()["error"]


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\x05\0\0\0ab", "claims 5 bytes past the end"),
        (b"\x01\0\0\0a", "ends after 1 of 2 elements"),
        (b"\x01\0\0\0a\x01\0\0\0bzz", "2 bytes left after 2 BYTES elements"),
    ],
)
def test_malformed_binary_bytes(blob, message) -> None:
    with pytest.raises(Exception, match=message):
        binary.decode(memoryview(blob), "BYTES", [2], "x")


def test_binary_bytes_elements_are_text_when_they_are_utf8_and_bytes_otherwise() -> None:
    decoded = binary.decode(memoryview(b"\x01\0\0\0a\x02\0\0\0\xff\xd8"), "BYTES", [2], "x")
    assert decoded.tolist() == ["a", b"\xff\xd8"]


def test_an_onnx_string_input_refuses_binary_elements_by_name(tmp_path) -> None:
    """ONNX Runtime would read a ``bytes`` element as the text of its repr: a 400 instead, naming the input."""
    client = make_client(write_identity_function(tmp_path / "texts", "texts", {"text": ("same", "BYTES", [-1])}))
    tensor = {"name": "text", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 14}}
    body, headers = framed({"inputs": [tensor]}, b"\x02\0\0\0ok\x04\0\0\0\xff\xd8\xff\xe0")
    response = client.post("/v2/models/texts/infer", data=body, headers=headers)
    assert response.status_code == 400, response.get_json()
    assert "input 'text': a BYTES element is binary data, not UTF-8 text" in response.get_json()["error"]
    texts = client.post("/v1/models/texts:predict", json={"instances": [{"b64": "b2s="}, {"b64": "/9j/4A=="}]})
    assert texts.status_code == 400 and "binary data, not UTF-8 text" in texts.get_json()["error"]
    fine = client.post("/v1/models/texts:predict", json={"instances": [{"b64": "b2s="}, "text"]})
    assert fine.status_code == 200 and fine.get_json() == {"predictions": ["ok", "text"]}


def test_binary_bool_must_be_zero_or_one() -> None:
    with pytest.raises(Exception, match="BOOL bytes must be 0 or 1"):
        binary.decode(memoryview(b"\x02"), "BOOL", [1], "x")


@pytest.mark.parametrize("datatype", [[None], 7, "FLOAT"])
def test_binary_tensors_need_a_known_datatype(digits_client, datatype) -> None:
    tensor = {"name": "pixels", "shape": [1, 64], "datatype": datatype, "parameters": {"binary_data_size": 256}}
    body, headers = framed({"inputs": [tensor]}, b"\0" * 256)
    response = digits_client.post("/v2/models/digits/infer", data=body, headers=headers)
    assert response.status_code == 400 and "unknown datatype" in response.get_json()["error"]


# -- Triton's own cases (server qa/L0_http/http_test.py), as its requests send them ----------------------
@pytest.fixture(scope="module")
def triton_zero(tmp_path_factory):
    """Triton's test models as contracts: identities of one FP32 input with a batch (``onnx_zero_1_float32``),
    of one BYTES element (``onnx_zero_1_object_1_element``), of one BYTES input of any length, and of 3 inputs."""
    root = tmp_path_factory.mktemp("triton-zero")

    def identity(folder: str, name: str, datatype: str, shape: list[int], inputs: int = 1):
        pairs = {f"INPUT{i}": (f"OUTPUT{i}", datatype, shape) for i in range(inputs)}
        return make_client(write_identity_function(root / folder, name, pairs))

    return {
        "float32": identity("f", "f32", "FP32", [-1, -1]),
        "one_string": identity("o", "one", "BYTES", [-1, 1]),
        "strings": identity("s", "strs", "BYTES", [-1, -1]),
        "three": identity("t", "three", "FP32", [-1, 8], inputs=3),
    }


@pytest.mark.parametrize("count", [8, 32])
def test_triton_raw_binary_request_is_answered_in_binary(triton_zero, count) -> None:
    """``test_raw_binary``: the body is the one input's bytes, and the answer's tail is the output's."""
    raw = np.arange(count, dtype=np.float32).tobytes()
    response = triton_zero["float32"].post("/v2/models/f32/infer", data=raw, headers={HEADER: "0"})
    assert response.status_code == 200, response.data
    meta, tail = unframe(response)
    assert tail == raw and meta["outputs"][0]["shape"] == [1, count]


def test_triton_raw_binary_bytes_element(triton_zero) -> None:
    """``test_byte``: a BYTES input of one element takes the whole body; the answer prefixes its length."""
    response = triton_zero["one_string"].post("/v2/models/one/infer", data=b"427", headers={HEADER: "0"})
    assert response.status_code == 200, response.data
    _, tail = unframe(response)
    assert tail[4:].decode() == "427" and int.from_bytes(tail[:4], "little") == 3


@pytest.mark.parametrize(
    ("model", "name", "body", "words"),
    [
        ("strings", "strs", b"427", "its shape must allow [1]"),  # test_byte_too_many_elements
        ("three", "three", np.arange(24, dtype=np.float32).tobytes(), "must have 1 input to be deduced"),
        ("float32", "f32", b"\0" * 7, "not a whole number of FP32"),
    ],
)
def test_triton_raw_binary_requests_it_refuses(triton_zero, model, name, body, words) -> None:
    response = triton_zero[model].post(f"/v2/models/{name}/infer", data=body, headers={HEADER: "0"})
    assert response.status_code == 400 and words in response.get_json()["error"]


def test_a_listed_output_without_binary_data_is_json_whatever_binary_data_output_says(digits_client, heldout) -> None:
    """Triton and KServe: ``binary_data_output`` covers the outputs left to the server; a listed output
    says ``binary_data`` itself, or is JSON."""
    x, _ = heldout
    blob = x[:2].astype("<f4").tobytes()
    tensor = {"name": "pixels", "shape": [2, 64], "datatype": "FP32", "parameters": {"binary_data_size": len(blob)}}
    outputs = [{"name": "label"}, {"name": "probabilities", "parameters": {"binary_data": True}}]
    body, headers = framed({"inputs": [tensor], "outputs": outputs, "parameters": {"binary_data_output": True}}, blob)
    meta, tail = unframe(digits_client.post("/v2/models/digits/infer", data=body, headers=headers))
    label, probabilities = meta["outputs"]
    assert len(label["data"]) == 2 and "parameters" not in label  # JSON
    assert probabilities["parameters"]["binary_data_size"] == len(tail) == 2 * 10 * 4 and "data" not in probabilities
