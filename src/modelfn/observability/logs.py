"""Logs that Cloud Logging and CloudWatch parse: one JSON object per line, and one line per request.

``MODELFN_LOG_FORMAT=json`` (the default when stderr is not a terminal, as on every platform)
writes each record as ``{"severity", "message", "time", "logger", ...}``; ``text`` writes the
classic line for people. Every request adds one line (``MODELFN_REQUEST_LOG``) with its method,
route, status, latency, model and version, and its trace id from ``traceparent`` (W3C),
``X-Cloud-Trace-Context`` (Google) or ``X-Amzn-Trace-Id`` (AWS). Cloud Logging reads ``severity``,
``message``, ``httpRequest`` and, with ``MODELFN_TRACE_PROJECT`` set,
``logging.googleapis.com/trace``, which links the line to its trace.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/\d+)?(?:;o=[01])?$")
_AMZN_ROOT = re.compile(r"(?:^|;)Root=(1-[0-9a-f]{8}-[0-9a-f]{24})(?:;|$)")
#: Python's level names -> Cloud Logging's severities (CloudWatch takes the field as it is).
SEVERITY = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "CRITICAL"}
REQUEST_LOGGER = "modelfn.request"
_REQUEST_LINES = logging.getLogger(REQUEST_LOGGER)  # looked up once: getLogger takes logging's lock


class JsonFormatter(logging.Formatter):
    """One JSON object per record; fields passed as ``extra={"fields": {...}}`` join the top level."""

    #: The last second formatted, and its text: consecutive lines mostly share their second.
    _second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second[0]:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        entry: dict[str, Any] = {
            "severity": SEVERITY.get(record.levelname, "DEFAULT"),
            "message": record.getMessage(),
            "time": f"{self._second[1]}.{int(record.msecs):03d}Z",
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        import orjson  # on the first line written, not at start-up (importing it takes ~13 ms)

        return orjson.dumps(entry, default=str).decode()


def trace_id(headers: Mapping[str, str]) -> str:
    """The request's trace id, from the first header that carries a well-formed one; else empty."""
    match = _TRACEPARENT.match(headers.get("traceparent", "").strip())
    if match:
        return match[1]
    match = _CLOUD_TRACE.match(headers.get("X-Cloud-Trace-Context", "").strip())
    if match:
        return match[1].lower()
    match = _AMZN_ROOT.search(headers.get("X-Amzn-Trace-Id", "").strip())
    return match[1] if match else ""


def log_request(
    method: str,
    path: str,
    status: int,
    seconds: float,
    *,
    route: str,
    model: str,
    version: str,
    headers: Mapping[str, str],
    project: str,
) -> None:
    """The one line of a request (its trace id read from ``headers`` only when the line is written)."""
    logger = _REQUEST_LINES
    if not logger.isEnabledFor(logging.INFO):
        return
    trace = trace_id(headers)
    fields: dict[str, Any] = {
        "httpRequest": {"requestMethod": method, "requestUrl": path[:512], "status": status,
                        "latency": f"{seconds:.6f}s"},
        "route": route,
        "model": model,
        "version": version,
        "latency_ms": round(seconds * 1000, 3),
    }  # fmt: skip
    if trace:
        fields["trace_id"] = trace
        if project:
            fields["logging.googleapis.com/trace"] = f"projects/{project}/traces/{trace}"
    where = f" {model} v{version}" if model else ""
    # The record is made here rather than through logger.info(): that looks up the caller's file
    # and line on every call (a walk of the stack), which a request line does not need.
    record = logger.makeRecord(
        REQUEST_LOGGER, logging.INFO, __file__, 0, "%s %s %d %.1f ms%s",
        (method, path[:200], status, seconds * 1000, where), None, extra={"fields": fields},
    )  # fmt: skip
    logger.handle(record)
