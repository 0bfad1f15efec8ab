"""Files as inputs: a photo of a digit through ``curl -F`` and as a raw body, and everything refused on the way.

Against the real ``modelfn serve functions/digits`` process (its contract's ``uploads:`` takes PNG
and JPEG up to 2 MiB and 4 megapixels), over real connections.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import requests
from PIL import Image

from modelfn.contract import load_contract
from modelfn.runtime.model import load_model, local_artifact
from modelfn.settings import Settings

TIMEOUT = 60


@pytest.fixture(scope="module")
def digits_photos():
    """A held-out digit the model gets right, drawn as dark ink on white paper, 12x larger; its label."""
    from helpers import DIGITS
    from sklearn.datasets import load_digits

    contract = load_contract(DIGITS)
    model = load_model(DIGITS, contract, Settings(), *local_artifact(contract, DIGITS))
    digits = load_digits()
    for index in range(len(digits.images)):
        grid, label = digits.images[index], int(digits.target[index])
        answer = model.predict_json({"image": grid.astype(int).tolist()})
        if answer["digit"] == label and label == 3:
            break
    paper = 255 - np.kron(grid, np.ones((12, 12))) * (255 / 16)
    paper = np.pad(paper, 24, constant_values=255).astype(np.uint8)  # a white margin around the ink
    photos = {}
    for fmt in ("PNG", "JPEG"):
        buffer = io.BytesIO()
        Image.fromarray(paper, "L").save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        photos[fmt] = buffer.getvalue()
    return photos, label


@pytest.mark.parametrize(("fmt", "media_type"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_a_photo_through_curl_F_is_read_as_its_digit(digits_server, digits_photos, fmt, media_type) -> None:
    photos, label = digits_photos
    files = {"image": (f"digit.{fmt.lower()}", photos[fmt], media_type)}
    response = requests.post(f"{digits_server.url}/predict", files=files, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.json()["digit"] == label


def test_a_raw_image_body_is_read_too(digits_server, digits_photos) -> None:
    photos, label = digits_photos
    response = requests.post(f"{digits_server.url}/models/digits/predict", data=photos["PNG"],
                             headers={"Content-Type": "image/png"}, timeout=TIMEOUT)  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["digit"] == label


def test_json_still_answers_whatever_it_is_labelled(digits_server) -> None:
    body = b'{"image": [[0,0,5,13,9,1,0,0],[0,0,13,15,10,15,5,0],[0,3,15,2,0,11,8,0],[0,4,12,0,0,8,8,0],' \
        b'[0,5,8,0,0,9,8,0],[0,4,11,0,1,12,7,0],[0,2,14,5,10,12,0,0],[0,0,6,13,10,0,0,0]]}'  # fmt: skip
    for content_type in ("application/json", "application/x-www-form-urlencoded", "text/plain"):
        response = requests.post(f"{digits_server.url}/predict", data=body,
                                 headers={"Content-Type": content_type}, timeout=TIMEOUT)  # fmt: skip
        assert response.status_code == 200, (content_type, response.text)
        assert response.json()["digit"] == 0


def refused(response: requests.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert words in response.json()["error"]


def test_an_undeclared_type_is_415_naming_what_is_accepted(digits_server) -> None:
    gif = io.BytesIO()
    Image.new("L", (8, 8)).save(gif, "GIF")
    url = f"{digits_server.url}/predict"
    files = {"image": ("d.gif", gif.getvalue(), "image/gif")}
    refused(requests.post(url, files=files, timeout=TIMEOUT), 415, "this model takes image/png, image/jpeg")
    wav = requests.post(url, data=b"RIFF", headers={"Content-Type": "audio/wav"}, timeout=TIMEOUT)
    refused(wav, 415, "it takes application/json, multipart/form-data, image/png")


def test_bytes_that_are_not_the_declared_image_are_415(digits_server, digits_photos) -> None:
    photos, _ = digits_photos
    files = {"image": ("digit.png", photos["JPEG"], "image/png")}
    refused(requests.post(f"{digits_server.url}/predict", files=files, timeout=TIMEOUT), 415,
            "declared image/png, but the bytes are image/jpeg")  # fmt: skip
    files = {"image": ("digit.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png")}
    refused(requests.post(f"{digits_server.url}/predict", files=files, timeout=TIMEOUT), 400,
            "is not a decodable image/png image")  # fmt: skip


def test_an_oversized_file_is_413_before_parsing(digits_server) -> None:
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (2 << 20)
    refused(requests.post(f"{digits_server.url}/predict", data=big, headers={"Content-Type": "image/png"},
                          timeout=TIMEOUT), 413, "over this model's limit of 2,097,152 bytes")  # fmt: skip
    files = {"image": ("a.png", big, "image/png")}
    refused(requests.post(f"{digits_server.url}/predict", files=files, timeout=TIMEOUT), 413, "limit")
    two = [
        ("image", ("a.png", b"\x89PNG\r\n\x1a\n", "image/png")),
        ("image", ("b.png", b"\x89PNG\r\n\x1a\n", "image/png")),
    ]
    refused(requests.post(f"{digits_server.url}/predict", files=two, timeout=TIMEOUT), 413, "more than 1 file(s)")


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header claiming ``width`` x ``height`` grey pixels, with one tiny compressed row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_refused_before_decoding(digits_server) -> None:
    """50,000 x 50,000 pixels (2.5 GB decoded) in a few dozen bytes, and one just over the contract's
    limit but under Pillow's own: both refused from the header."""
    for width, height, words in ((50_000, 50_000, "is over the limit of 4,000,000 pixels"),
                                 (4_000, 2_000, "is 4000x2000 pixels, over the limit of 4,000,000")):  # fmt: skip
        files = {"image": ("bomb.png", png_bomb(width, height), "image/png")}
        answer = requests.post(f"{digits_server.url}/predict", files=files, timeout=TIMEOUT)
        refused(answer, 400, words)
        assert answer.elapsed.total_seconds() < 10  # nothing was decoded
    health = requests.get(f"{digits_server.url}/v2/health/ready", timeout=TIMEOUT)
    assert health.status_code == 200  # the worker is alive


def test_malformed_forms_are_400(digits_server) -> None:
    url = f"{digits_server.url}/predict"
    no_boundary = requests.post(url, data=b"--x\r\n", headers={"Content-Type": "multipart/form-data"}, timeout=TIMEOUT)
    refused(no_boundary, 400, "needs a boundary")
    body = b"--b\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n\r\n--b--\r\n"  # no Content-Disposition
    refused(requests.post(url, data=body, headers={"Content-Type": "multipart/form-data; boundary=b"},
                          timeout=TIMEOUT), 400, "Content-Disposition: form-data with a name")  # fmt: skip
    text_only = requests.post(url, files={"note": (None, "hello")}, timeout=TIMEOUT)
    refused(text_only, 400, "send {")  # the hook: no image in the form


def test_a_model_without_uploads_refuses_files_with_415(tmp_path, function_copy) -> None:
    from helpers import running

    folder = function_copy(uploads=None, dependencies=[])
    with running(folder, tmp_path / "serve.log") as server:
        files = {"image": ("digit.png", b"\x89PNG\r\n\x1a\n", "image/png")}
        refused(requests.post(f"{server.url}/predict", files=files, timeout=TIMEOUT), 415,
                "does not take multipart/form-data bodies; it takes application/json")  # fmt: skip
