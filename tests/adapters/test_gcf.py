"""The functions-framework adapter: body limits and request translation, in-process."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from conftest import make_client
from helpers import DIGITS, ROOT, running


def test_the_body_limit_comes_from_settings(monkeypatch) -> None:
    monkeypatch.setenv("MODELFN_MAX_BODY_BYTES", "1000")
    client = make_client(DIGITS)
    small = client.post("/predict", json={"image": [[0] * 8] * 8})
    assert small.status_code == 200
    big = client.post("/predict", json={"image": [[0] * 8] * 8, "padding": "x" * 1000})
    assert big.status_code == 413
    assert "; the limit is 1000" in big.get_json()["error"]
    assert big.headers["Connection"] == "close"


def test_trailing_slash_and_head(digits_client) -> None:
    assert digits_client.get("/v2/health/live/").status_code == 200
    assert digits_client.head("/v2/health/live").status_code == 200


def test_compressed_bodies_are_inflated_and_other_encodings_refused_clearly(digits_client) -> None:
    import gzip
    import zlib

    body = b'{"image": [[0,0,5,13,9,1,0,0],[0,0,13,15,10,15,5,0],[0,3,15,2,0,11,8,0],[0,4,12,0,0,8,8,0],' \
        b'[0,5,8,0,0,9,8,0],[0,4,11,0,1,12,7,0],[0,2,14,5,10,12,0,0],[0,0,6,13,10,0,0,0]]}'  # fmt: skip
    for encoding, data in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        response = digits_client.post("/predict", data=data, headers={"Content-Encoding": encoding})
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["digit"] == 0
    response = digits_client.post("/predict", data=b"...", headers={"Content-Encoding": "br"})
    assert response.status_code == 415
    assert response.get_json() == {"error": "Content-Encoding 'br' is not accepted; send deflate, gzip, x-gzip or none"}


def wait_for(condition, seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.slow
@pytest.mark.parametrize("folder", [DIGITS, ROOT / "functions" / "digits-ensemble"], ids=["one-model", "group"])
def test_prefetch_loads_in_the_worker_before_any_request(tmp_path, folder) -> None:
    """A real gunicorn master and its forked worker: only /v2/health/live is asked, the model loads anyway."""
    with running(folder, tmp_path / "serve.log", env={"MODELFN_PREFETCH": "1"}) as server:
        assert wait_for(lambda: "loaded model mlp v1" in server.log() or "loaded model digits v1" in server.log(), 30)
        assert "prefetch started in worker" in server.log()
        if folder == DIGITS:
            ready = requests.get(f"{server.url}/v2/health/ready", timeout=5)
            assert ready.status_code == 200 and ready.json() == {"ready": True}
    assert server.log().count("loaded model") == (1 if folder == DIGITS else 3)  # once each, in the worker only


@pytest.mark.slow
def test_without_prefetch_nothing_loads_before_a_request(tmp_path) -> None:
    with running(DIGITS, tmp_path / "serve.log") as server:
        assert not wait_for(lambda: "loaded model" in server.log(), 2)


def _chunks(body: bytes, size: int = 100) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_chunked_body_is_read_whole_and_its_limit_holds(digits_server) -> None:
    """gunicorn ends a chunked body itself (wsgi.input_terminated): modelfn reads its stream directly."""
    pixels = [[0.0] * 64]
    body = json.dumps({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": pixels}]})
    url = f"{digits_server.url}/v2/models/digits/infer"
    answer = requests.post(url, data=_chunks(body.encode()), headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert [output["name"] for output in answer.json()["outputs"]] == ["probabilities", "label"]
    too_big = requests.post(url, data=_chunks(b" " * (5 << 20), 1 << 20), timeout=60)  # the limit is 4 MiB
    assert too_big.status_code == 413 and "limit" in too_big.json()["error"]


def test_headers_are_found_whatever_their_case(digits_server) -> None:
    import numpy as np

    header = json.dumps({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 256}}]}).encode()  # fmt: skip
    body = header + np.zeros(64, np.float32).tobytes()
    answer = requests.post(f"{digits_server.url}/v2/models/digits/infer", data=body,
                           headers={"inference-header-content-length": str(len(header))}, timeout=30)  # fmt: skip
    assert answer.status_code == 200, answer.text
