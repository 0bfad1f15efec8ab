"""``modelfn site``: serve a built web bundle locally, as its hosts serve it.

Only the files ``site.json`` lists are served, each with its media type (``application/wasm``
included), caching and the site's headers; a path that is not in the list is a 404 whatever it
names, so nothing outside the bundle can be reached. Where a ``gzip/`` copy exists and the browser
accepts gzip, the copy is sent with ``Content-Encoding: gzip``. ``isolated=False`` leaves out the
COOP/COEP pair, which is how a host without custom headers serves the site (one thread).
"""

from __future__ import annotations

import json
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from modelfn.webfiles import manifest_files, reply

ISOLATION = ("Cross-Origin-Opener-Policy", "Cross-Origin-Embedder-Policy")


def make_server(root: Path, host: str = "127.0.0.1", port: int = 0, *, isolated: bool = True) -> ThreadingHTTPServer:
    """A server for the bundle folder ``root`` (the one holding ``site.json``), not yet started."""
    files = manifest_files(root)
    site_headers = json.loads((root / "site.json").read_text())["headers"]
    headers = {k: v for k, v in site_headers.items() if isolated or k not in ISOLATION}

    class Handler(BaseHTTPRequestHandler):
        server_version = "modelfn-site"
        sys_version = ""
        timeout = 30  # a client that stops sending is dropped, not waited for

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # head and body: no Nagle wait

        def do_GET(self) -> None:
            self._send(head=False)

        def do_HEAD(self) -> None:
            self._send(head=True)

        def _send(self, *, head: bool) -> None:
            path = unquote(urlsplit(self.path).path).lstrip("/") or "index.html"
            if path.endswith("/"):
                path += "index.html"
            entry = files.get(path)
            if entry is None:
                self._reply(HTTPStatus.NOT_FOUND, b"not found\n", {"Content-Type": "text/plain; charset=utf-8"})
                return
            answer = reply(root, path, entry, if_none_match=self.headers.get("If-None-Match", ""),
                           accept_encoding=self.headers.get("Accept-Encoding", ""))  # fmt: skip
            if answer.body is None:
                self._reply(HTTPStatus(answer.status), b"", answer.headers, head=True)
                return
            self._reply(HTTPStatus(answer.status), answer.body.read_bytes(), answer.headers, head=head)

        def _reply(self, status: HTTPStatus, body: bytes, extra: dict[str, str], *, head: bool = False) -> None:
            self.send_response(status)
            for name, value in {**headers, **extra}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the caller prints what it needs

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


class BackgroundSite:
    """A site server on a free port, in a thread, for the length of a ``with`` block."""

    def __init__(self, root: Path, *, isolated: bool = True) -> None:
        self.server = make_server(root, isolated=isolated)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> BackgroundSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
