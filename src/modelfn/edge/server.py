"""``python -m modelfn.edge serve``: the edge model over HTTP on the device (standard library only).

``POST /predict``, ``POST /v2/models/{name}[/versions/{v}]/infer``, ``GET /v2/models/{name}``,
``GET /v2/health/live`` and ``/ready``. Each connection has its own thread and a socket timeout,
so a client that sends slowly holds only its own thread, and only for :data:`TIMEOUT_S`. A body
must declare its length (no chunked uploads) and stay under ``max_body_bytes``; every error is a
JSON ``{"error": ...}`` with its status, and a fault in the model is a 500 that names no internals.
"""

from __future__ import annotations

import logging
import re
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from modelfn.errors import ModelfnError

from . import answers
from .model import EdgeModel

TIMEOUT_S = 30
MAX_BODY_BYTES = 16 << 20
_INFER = re.compile(r"^/v2/models/([^/]{1,256})(?:/versions/[^/]{1,64})?/infer$")
_METADATA = re.compile(r"^/v2/models/([^/]{1,256})(?:/versions/[^/]{1,64})?$")
log = logging.getLogger("modelfn.edge")


def make_server(model: EdgeModel, host: str, port: int, *, max_body_bytes: int = MAX_BODY_BYTES) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "modelfn-edge"
        sys_version = ""
        protocol_version = "HTTP/1.1"
        timeout = TIMEOUT_S

        def setup(self) -> None:
            super().setup()
            # The head and the body go out as two writes: without this, Nagle's algorithm holds the
            # body back for the client's delayed ACK (~40 ms a request on keep-alive connections).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{model.name}/ready"):
                self._answer(HTTPStatus.OK, b"{}")
            elif (found := _METADATA.match(path)) is not None:
                self._run(lambda: answers.metadata(model, found.group(1)))
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no route GET {path[:200]}")

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/predict":
                self._run(lambda: answers.predict(model, self._body()))
            elif (found := _INFER.match(path)) is not None:
                self._run(lambda: answers.infer(model, found.group(1), self._body()))
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no route POST {path[:200]}")

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                raise _Refused(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length (no chunked encoding)")
            length = self.headers.get("Content-Length", "")
            if not length.isdigit():
                raise _Refused(HTTPStatus.LENGTH_REQUIRED, "a Content-Length is required")
            if int(length) > max_body_bytes:
                raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is over {max_body_bytes:,} bytes")
            body = self.rfile.read(int(length))
            if len(body) != int(length):
                raise _Refused(HTTPStatus.BAD_REQUEST, "the body ended before its Content-Length")
            return body

        def _run(self, work: Any) -> None:
            try:
                self._answer(HTTPStatus.OK, work())
            except _Refused as refused:
                self.close_connection = True  # the rest of the body, if any, is not read
                self._error(refused.status, refused.message)
            except ModelfnError as exc:
                if exc.status >= 500:
                    log.exception("the model failed")
                self._error(HTTPStatus(exc.status), str(exc))
            except Exception:
                log.exception("the edge runner failed")
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "the model failed; see the runner's log")

        def _error(self, status: HTTPStatus, message: str) -> None:
            self._answer(status, answers.dumps({"error": message}))

        def _answer(self, status: HTTPStatus, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message
