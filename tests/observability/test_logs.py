"""JSON log lines: the timestamp (cached per second) and the request line's fields, without a server."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from modelfn.observability.logs import REQUEST_LOGGER, JsonFormatter, log_request


def record_at(created: float) -> logging.LogRecord:
    record = logging.LogRecord("modelfn", logging.WARNING, __file__, 1, "at %s", ("noon",), None)
    record.created, record.msecs = created, (created - int(created)) * 1000
    return record


def test_each_line_has_its_own_second_and_milliseconds() -> None:
    formatter = JsonFormatter()
    times = [orjson.loads(formatter.format(record_at(t)))["time"] for t in (0.25, 0.75, 1.5, 86399.875, 0.125)]
    assert times == [
        "1970-01-01T00:00:00.250Z",
        "1970-01-01T00:00:00.750Z",
        "1970-01-01T00:00:01.500Z",
        "1970-01-01T23:59:59.875Z",
        "1970-01-01T00:00:00.125Z",
    ]
    line = orjson.loads(formatter.format(record_at(0.25)))
    assert (line["severity"], line["message"], line["logger"]) == ("WARNING", "at noon", "modelfn")


@pytest.fixture
def request_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(REQUEST_LOGGER)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lambda: [orjson.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def test_the_request_line_names_route_model_version_and_trace(request_lines) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    log_request("POST", "/v2/models/digits/infer", 200, 0.0012345, route="/v2/models/{name}/infer",
                model="digits", version="3", headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
                project="p")  # fmt: skip
    log_request("GET", "/nowhere", 404, 0.0001, route="unmatched", model="", version="", headers={}, project="p")
    first, second = request_lines()
    assert first["message"] == "POST /v2/models/digits/infer 200 1.2 ms digits v3"
    assert first["httpRequest"] == {"requestMethod": "POST", "requestUrl": "/v2/models/digits/infer",
                                    "status": 200, "latency": "0.001234s"}  # fmt: skip
    assert (first["route"], first["model"], first["version"], first["latency_ms"]) == (
        "/v2/models/{name}/infer", "digits", "3", 1.234,
    )  # fmt: skip
    assert first["logging.googleapis.com/trace"] == f"projects/p/traces/{trace}"
    assert first["logger"] == REQUEST_LOGGER and first["severity"] == "INFO"
    assert second["message"] == "GET /nowhere 404 0.1 ms" and "trace_id" not in second


def test_no_line_when_the_request_logger_is_off(request_lines) -> None:
    logging.getLogger(REQUEST_LOGGER).setLevel(logging.WARNING)
    log_request("POST", "/predict", 200, 0.001, route="/predict", model="m", version="1", headers={}, project="")
    assert request_lines() == []
