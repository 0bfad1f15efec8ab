"""The functions-framework adapter: body limits and request translation, in-process."""

from __future__ import annotations

from conftest import make_client
from helpers import DIGITS


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


def test_compressed_bodies_are_refused_clearly(digits_client) -> None:
    import gzip

    response = digits_client.post(
        "/predict", data=gzip.compress(b'{"image": []}'), headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 415
    assert response.get_json() == {"error": "Content-Encoding 'gzip' is not accepted; send the body uncompressed"}
