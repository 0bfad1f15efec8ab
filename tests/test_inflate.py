"""Compressed request bodies: inflated within the body limit as they inflate, refused when broken."""

from __future__ import annotations

import gzip
import json
import time
import zlib

import pytest

from modelfn.errors import MalformedBody, PayloadTooLarge, UnsupportedMediaType
from modelfn.inflate import inflate

BODY = b'{"inputs": []}' * 100


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("gzip", gzip.compress(BODY)),
        ("x-gzip", gzip.compress(BODY)),
        ("deflate", zlib.compress(BODY)),
        ("deflate", zlib.compress(BODY)[2:-4]),  # raw DEFLATE, as some clients send "deflate"
    ],
)
def test_each_encoding_inflates(encoding: str, data: bytes) -> None:
    assert inflate(data, encoding, 1 << 20) == BODY


def test_a_bomb_stops_at_the_limit() -> None:
    """1 GiB of zeros in about 1 MB of gzip: refused after the limit's worth of inflating."""
    inflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1 << 20)
    bomb = b"".join(inflater.compress(chunk) for _ in range(1024)) + inflater.flush()
    assert len(bomb) < 2 << 20
    started = time.process_time()
    with pytest.raises(PayloadTooLarge, match="inflates to over 4,194,304 bytes"):
        inflate(bomb, "gzip", 4 << 20)
    assert time.process_time() - started < 1  # 4 MiB of work, not 1 GiB


def test_the_limit_itself_is_accepted() -> None:
    assert len(inflate(gzip.compress(b"x" * 1000), "gzip", 1000)) == 1000
    with pytest.raises(PayloadTooLarge):
        inflate(gzip.compress(b"x" * 1001), "gzip", 1000)


@pytest.mark.parametrize(
    ("encoding", "data", "message"),
    [
        ("gzip", b"not gzip at all", "not valid gzip data"),
        ("deflate", b"not deflate", "not valid deflate data"),
        ("gzip", gzip.compress(BODY)[:-12], "truncated"),
        ("gzip", gzip.compress(BODY) + b"trailing", "bytes after its compressed data"),
    ],
)
def test_broken_data_is_a_400(encoding: str, data: bytes, message: str) -> None:
    with pytest.raises(MalformedBody, match=message):
        inflate(data, encoding, 1 << 20)


def test_other_encodings_are_415_naming_the_accepted_ones() -> None:
    with pytest.raises(UnsupportedMediaType, match="'br' is not accepted; send deflate, gzip, x-gzip or none"):
        inflate(b"...", "br", 1 << 20)
    with pytest.raises(UnsupportedMediaType):
        inflate(b"...", "gzip, br", 1 << 20)


def test_over_a_real_connection_gzip_answers_and_a_bomb_is_413(digits_server) -> None:
    import requests

    tensor = {"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}
    body = gzip.compress(json.dumps({"inputs": [tensor]}).encode())
    url = f"{digits_server.url}/v2/models/digits/infer"
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    answer = requests.post(url, data=body, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_name"] == "digits"
    bomb = gzip.compress(b" " * (64 << 20), compresslevel=9)  # 64 MiB of spaces in about 64 KB
    refused = requests.post(url, data=bomb, headers=headers, timeout=60)
    assert refused.status_code == 413 and "inflates to over" in refused.json()["error"]
    assert requests.get(f"{digits_server.url}/v2/health/ready", timeout=60).status_code == 200
