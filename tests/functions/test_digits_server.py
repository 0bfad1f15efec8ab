"""The digits function as a real `modelfn serve` process (functions-framework + gunicorn) over HTTP."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import orjson
import pytest
import requests
from helpers import DIGITS, copy_function, near_documented, running

pytestmark = pytest.mark.slow


def test_heldout_set_through_every_route(digits_server, heldout) -> None:
    x, y = heldout
    url = digits_server.url
    oip = requests.post(f"{url}/v2/models/digits/infer", json={
        "id": "heldout", "outputs": [{"name": "label"}],
        "inputs": [{"name": "pixels", "shape": [360, 64], "datatype": "FP32", "data": x.ravel().tolist()}],
    }, timeout=30)  # fmt: skip
    assert oip.status_code == 200 and oip.json()["id"] == "heldout"
    oip_labels = np.array(oip.json()["outputs"][0]["data"])

    tfs = requests.post(f"{url}/v1/models/digits:predict", json={"instances": x.tolist()}, timeout=30)
    tfs_labels = np.array([p["label"] for p in tfs.json()["predictions"]])

    images = [image.reshape(8, 8).tolist() for image in x]
    simple = requests.post(f"{url}/predict", json={"images": images[:256]}, timeout=30).json()["predictions"]
    simple += requests.post(f"{url}/predict", json={"images": images[256:]}, timeout=30).json()["predictions"]
    simple_labels = np.array([p["digit"] for p in simple])

    assert np.array_equal(oip_labels, tfs_labels) and np.array_equal(oip_labels, simple_labels)
    accuracy = (oip_labels == y).mean()
    documented = __import__("yaml").safe_load((DIGITS / "modelfn.yaml").read_text())["docs"]["metrics"]
    assert near_documented(accuracy, documented["heldout_accuracy"], len(y))
    assert accuracy >= 0.95


@pytest.mark.parametrize("binary_data", [True, False], ids=["binary-defaults", "json"])
def test_an_unmodified_triton_client_works(digits_server, heldout, binary_data) -> None:
    """tritonclient's HTTP client, as its docs use it (binary tensors by default), against modelfn."""
    import tritonclient.http as triton

    x, y = heldout
    client = triton.InferenceServerClient(digits_server.url.removeprefix("http://"))
    assert client.is_server_live()
    # Readiness starts the lazy load; in a random order this may be the session server's first request.
    deadline = time.monotonic() + 60
    while not client.is_server_ready():
        assert time.monotonic() < deadline, "the model did not load within 60 s"
        time.sleep(0.1)
    assert client.is_model_ready("digits")
    assert client.get_model_metadata("digits")["inputs"][0]["name"] == "pixels"
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    pixels = triton.InferInput("pixels", list(x.shape), "FP32")
    pixels.set_data_from_numpy(x, binary_data=binary_data)
    labelled = client.infer("digits", [pixels], outputs=[triton.InferRequestedOutput("label", binary_data=binary_data)])
    assert (labelled.as_numpy("label") == y).mean() >= 0.95
    everything = client.infer("digits", [pixels], request_id="r-1")  # no outputs named: all, in binary
    assert everything.get_response()["id"] == "r-1"
    assert everything.as_numpy("probabilities").shape == (360, 10)
    assert np.array_equal(everything.as_numpy("label"), labelled.as_numpy("label"))


def test_oversized_bodies_are_refused_without_buffering(digits_server) -> None:
    big = b"[" + b"0," * (3 * 1024 * 1024) + b"0]"  # ~6 MB, over the 4 MiB default
    response = requests.post(f"{digits_server.url}/predict", data=big, timeout=30)
    assert response.status_code == 413 and "limit" in response.json()["error"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(6):
            yield b" " * (1024 * 1024)

    response = requests.post(f"{digits_server.url}/predict", data=chunks(), timeout=30)
    assert response.status_code == 413
    assert requests.get(f"{digits_server.url}/v2/health/live", timeout=5).json() == {"live": True}


def test_a_stampede_on_a_cold_server_loads_once(tmp_path) -> None:
    body = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}
    with running(DIGITS, tmp_path / "serve.log") as server:
        barrier = threading.Barrier(24)

        def first_request(_: int) -> int:
            barrier.wait()
            return requests.post(f"{server.url}/v2/models/digits/infer", json=body, timeout=60).status_code

        with ThreadPoolExecutor(24) as pool:
            statuses = list(pool.map(first_request, range(24)))
        log = server.log()
    assert statuses == [200] * 24
    assert log.count("loading model digits v1") == 1, log
    assert log.count("loaded model digits v1") == 1


def test_a_failed_load_is_a_503_and_is_retried(tmp_path) -> None:
    folder = copy_function(tmp_path)
    good = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(good[:-10])  # truncated artifact
    body = {"instances": [[0.0] * 64]}
    with running(folder, tmp_path / "serve.log") as server:
        predict = f"{server.url}/v1/models/digits:predict"
        ready = requests.get(f"{server.url}/v2/health/ready", timeout=10)
        assert ready.status_code == 503 and ready.json() == {"ready": False}
        failed = requests.post(predict, json=body, timeout=30)
        assert failed.status_code == 503
        assert "digest mismatch" in failed.json()["error"] and failed.headers["Retry-After"] == "1"
        assert requests.get(f"{server.url}/v2/models/digits", timeout=10).status_code == 200

        (folder / "model.onnx").write_bytes(good)  # the store heals; the process was never restarted
        assert requests.post(predict, json=body, timeout=30).status_code == 200
        assert requests.get(f"{server.url}/v2/health/ready", timeout=10).json() == {"ready": True}
        assert server.process.poll() is None


def oip(server, body: bytes, **headers: str | bytes) -> requests.Response:
    return requests.post(f"{server.url}/v2/models/digits/infer", data=body, headers=headers, timeout=30)


@pytest.mark.parametrize("length", ["²", "١٢".encode(), "9" * 5000, "-1", "1_2"])  # "²" is a latin-1 digit to str
def test_a_binary_header_length_that_is_not_a_plain_decimal_is_a_400(digits_server, length: str | bytes) -> None:
    body = b'{"inputs": []}'
    response = oip(digits_server, body, **{"Inference-Header-Content-Length": length})
    assert response.status_code == 400
    assert "Inference-Header-Content-Length must be a length" in response.json()["error"]


def test_an_empty_tensor_with_huge_dimensions_is_refused_not_a_500(digits_server) -> None:
    for shape in ([0, 2**40, 2**40], [2**62, 0, 4], [0] + [2**22] * 15):
        tensor = {"name": "pixels", "shape": shape, "datatype": "FP32", "data": []}
        response = oip(digits_server, orjson.dumps({"inputs": [tensor]}))
        assert response.status_code == 413 and "non-zero dimensions" in response.json()["error"]
    huge = b"1" + b"0" * 30
    beyond = b'{"inputs": [{"name": "pixels", "shape": [0, %s], "datatype": "FP32", "data": []}]}' % huge
    assert oip(digits_server, beyond).status_code == 400  # beyond 64 bits: not JSON this server reads


def test_the_contract_is_checked_before_the_data_is_decoded(digits_server) -> None:
    # Numbers declared BYTES: decoding first would answer "BYTES data must be strings"; the contract
    # (pixels are FP32) answers first, so a body of a million strings costs no decoding either.
    numbers = {"name": "pixels", "shape": [1, 64], "datatype": "BYTES", "data": list(range(64))}
    response = oip(digits_server, orjson.dumps({"inputs": [numbers]}))
    assert response.status_code == 400 and "datatype BYTES, the model expects FP32" in response.json()["error"]
    strings = {"name": "pixels", "shape": [1, 1_000_000], "datatype": "BYTES", "data": [""] * 1_000_000}
    response = oip(digits_server, orjson.dumps({"inputs": [strings]}))
    assert response.status_code == 400 and "the model expects FP32" in response.json()["error"]
    unknown = {"name": "pixelz", "shape": [1, 64], "datatype": "FP32", "data": "not even a list"}
    response = oip(digits_server, orjson.dumps({"inputs": [unknown]}))
    assert response.status_code == 400 and "unknown input(s) ['pixelz']" in response.json()["error"]


def test_the_hook_coerces_nothing_on_a_live_server(digits_server) -> None:
    for image, words in (([["5"] * 8] * 8, "got strings"), ([[True] * 8] * 8, "got true/false"),
                         ("0" * 64, "'image' must be a list")):  # fmt: skip
        response = requests.post(f"{digits_server.url}/predict", json={"image": image}, timeout=30)
        assert response.status_code == 400 and words in response.json()["error"]
