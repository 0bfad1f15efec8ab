"""modelfn answering in front of Flask in functions-framework's app: the same answers, without Flask."""

from __future__ import annotations

import io
import json
from typing import Any

import functions_framework
import pytest
from conftest import make_client
from helpers import DIGITS, logging_restored

from modelfn.adapters.wsgi import EnvironHeaders, WsgiFront, request_from_environ
from modelfn.errors import PayloadTooLarge

OIP = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}
IMAGE = {"image": [[0, 0, 5, 13, 9, 1, 0, 0]] * 8}


def test_the_environ_headers_view() -> None:
    headers = EnvironHeaders({"HTTP_X_API_KEY": "k", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "2",
                              "HTTP_CONTENT_TYPE": "ignored", "wsgi.input": object(), "HTTP_ODD": 1})  # fmt: skip
    assert headers.get("x-api-key") == headers["X-Api-Key"] == "k"
    assert headers.get("Content-Type") == "application/json" and headers["content-length"] == "2"
    assert headers.get("Missing") is None and headers.get("Missing", "d") == "d" and "Missing" not in headers


def environ(body: bytes = b"", *, path: str = "/", terminated: bool = True, **extra: Any) -> dict[str, Any]:
    values = {"REQUEST_METHOD": "post", "PATH_INFO": path, "wsgi.input": io.BytesIO(body),
              "CONTENT_LENGTH": str(len(body)), **extra}  # fmt: skip
    if terminated:
        values["wsgi.input_terminated"] = True
    return values


def test_a_request_is_read_from_the_environ_as_werkzeug_reads_it() -> None:
    # PATH_INFO holds the raw bytes as latin-1; werkzeug decodes them as UTF-8 and keeps one leading slash.
    request = request_from_environ(environ(b"{}", path="//v2/models/caf\xc3\xa9"), 100)
    assert (request.method, request.path, request.body) == ("POST", "/v2/models/café", b"{}")
    assert request_from_environ(environ(path="/\xff"), 100).path == "/\ufffd"
    # Without wsgi.input_terminated the stream is bounded by Content-Length, and no length is no body.
    assert request_from_environ(environ(b"abcdef", terminated=False, CONTENT_LENGTH="3"), 100).body == b"abc"
    assert request_from_environ(environ(b"abcdef", terminated=False, CONTENT_LENGTH=""), 100).body == b""


def test_a_body_over_the_limit_is_refused_declared_or_not() -> None:
    with pytest.raises(PayloadTooLarge, match="the body is 101 bytes; the limit is 100"):
        request_from_environ(environ(b"x" * 101), 100)
    with pytest.raises(PayloadTooLarge, match="over the limit of 100 bytes"):  # chunked: no Content-Length
        request_from_environ(environ(b"x" * 101, CONTENT_LENGTH=""), 100)
    assert len(request_from_environ(environ(b"x" * 100), 100).body) == 100


def _answers(client: Any) -> list[tuple[int, Any, str | None, str | None]]:
    """Status, body, Content-Type and X-Model-Version of the same requests, good and bad."""
    calls = [
        client.post("/v2/models/digits/infer", json=OIP),
        client.post("/predict", json=IMAGE),
        client.get("/v2/models/digits"),
        client.get("/v2/health/live/"),
        client.post("/v2/models/digits/infer", json={"inputs": [{"name": "pixels", "shape": [1, 63]}]}),
        client.post("/predict", data=b"{not json", content_type="application/json"),
        client.post("/v2/models/digits/infer", data=b"x" * (5 << 20)),
        client.get("/nowhere"),
        client.get("/robots.txt"),
        client.delete("/v2/models/digits/infer"),
    ]
    return [(answer.status_code, answer.get_json(silent=True) or answer.data, answer.headers.get("Content-Type"),
             answer.headers.get("X-Model-Version")) for answer in calls]  # fmt: skip


def test_the_front_answers_as_flask_answers(monkeypatch) -> None:
    front = make_client(DIGITS)
    assert isinstance(front.application.wsgi_app, WsgiFront)
    with_front = _answers(front)
    monkeypatch.setenv("MODELFN_WSGI_FRONT", "0")
    flask = make_client(DIGITS)
    assert not isinstance(flask.application.wsgi_app, WsgiFront)
    through_flask = _answers(flask)
    for mine, theirs in zip(with_front, through_flask, strict=True):
        if mine[0] == 404 and theirs[0] == 404:  # a path no route has: each answers its own JSON 404
            assert isinstance(mine[1], dict) and "error" in mine[1] and mine[2] == "application/json"
            continue
        assert mine == theirs
    assert [status for status, *_ in with_front] == [200, 200, 200, 200, 400, 400, 413, 404, 404, 405]


def test_flask_is_not_called_once_the_front_answers() -> None:
    client = make_client(DIGITS)
    app = client.application

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Flask's view ran")

    assert client.post("/predict", json=IMAGE).status_code == 200  # the first request decides
    app.view_functions["run"] = refuse  # the front already knows the view was modelfn's
    answer = client.post("/v2/models/digits/infer", json=OIP)
    assert answer.status_code == 200 and answer.headers["Content-Length"] == str(len(answer.data))
    head = client.head("/v2/health/live")
    assert head.status_code == 200 and head.data == b"" and int(head.headers["Content-Length"]) > 0


def test_the_front_stands_aside_for_another_target(monkeypatch) -> None:
    """digits' main.py also defines the storage trigger: deployed with that target, Flask answers."""
    for name in ("FUNCTION_TARGET", "FUNCTION_SIGNATURE_TYPE", "FUNCTION_TRIGGER_TYPE"):
        monkeypatch.setenv(name, "")  # functions-framework writes them for the process: restored afterwards
    app = functions_framework.create_app("handle_event", str(DIGITS / "main.py"))
    assert isinstance(app.wsgi_app, WsgiFront)  # made by the file's HTTP handler, which is not the target
    client = app.test_client()
    event = {"specversion": "1.0", "type": "google.cloud.storage.object.v1.finalized", "source": "//storage",
             "id": "1", "data": {"bucket": "b", "name": "elsewhere/x.csv"}}  # fmt: skip
    answer = client.post("/", data=json.dumps(event), content_type="application/cloudevents+json")
    assert answer.status_code == 200, answer.data  # functions-framework's CloudEvent view took it
    assert client.get("/v2/health/live").status_code == 405  # not modelfn's route: the event view's method check


def test_functions_frameworks_execution_id_logging_keeps_flask(monkeypatch) -> None:
    monkeypatch.setenv("LOG_EXECUTION_ID", "true")
    with logging_restored():  # functions-framework's dictConfig disables every logger in the process
        client = make_client(DIGITS)
    assert not isinstance(client.application.wsgi_app, WsgiFront)
    answer = client.post("/predict", json=IMAGE)
    assert answer.status_code == 200, answer.data
    unroutable = client.get("/v2/models/digits/versions/%C3%B3%0A")  # Flask's own 404, as JSON too
    assert unroutable.status_code == 404 and unroutable.get_json() == {"error": "no route for this path"}
