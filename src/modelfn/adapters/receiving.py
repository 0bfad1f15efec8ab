"""The server's worker: a request is received whole before a thread takes it.

gunicorn's threaded worker gives a connection to a thread as soon as its first byte arrives, and the
thread then blocks reading the rest of the request with no time limit: a handful of clients that send
half a request (an unfinished header, a declared body never sent) hold every thread, health checks
included, for as long as they stay connected. This worker keeps gunicorn's design (one main loop with
a selector, a pool of threads for the application) and moves the reading into the main loop, where a
waiting connection costs a socket and a buffer, not a thread:

- the request's head must arrive within ``head_timeout_s`` and be at most ``head_bytes``; the whole
  request within ``receive_timeout_s``; its body at most ``body_bytes`` (``MODELFN_MAX_BODY_BYTES``);
- the bodies received and not yet answered share ``buffer_bytes``; past it a request is refused with
  503 and ``Retry-After`` instead of growing the process;
- only a complete request goes to a thread, pre-fed to gunicorn's own parser, so the application and
  the rest of gunicorn (keep-alive, graceful shutdown) see what they always did.

h11 frames the request (head, ``Content-Length`` or chunked body) incrementally, in linear time and
with a size bound; it is the parser of uvicorn and httpx, already installed with functions-framework.
Every refusal, here or from gunicorn's own parser, is JSON (``{"error": ...}``), never HTML.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import time
from functools import partial
from http import HTTPStatus
from typing import Any, NamedTuple

import h11
import orjson
from gunicorn.http import errors as http_errors
from gunicorn.http.message import Request
from gunicorn.http.parser import RequestParser
from gunicorn.workers.gthread import ThreadWorker

log = logging.getLogger("modelfn")

#: How long a refused connection is read and discarded after the answer, so that closing it with
#: unread bytes does not reset the connection before the client has read why.
_LINGER_S = 2.0
#: At most this many refused connections linger at once; past it one is closed at once (its answer sent).
_MAX_LINGERING = 256
_CHUNK = 256 * 1024
#: Bytes a chunked body's framing (chunk sizes, CRLFs) may add to the body limit on the wire.
_FRAMING = 64 * 1024


class ReceiveLimits(NamedTuple):
    head_bytes: int = 16 * 1024
    body_bytes: int = 4 * 1024 * 1024
    head_timeout_s: float = 10.0
    receive_timeout_s: float = 30.0
    buffer_bytes: int = 64 * 1024 * 1024


class _Receipt:
    """One request being received: its framing parser, its bytes and its deadlines."""

    __slots__ = ("deadline", "framing", "head_deadline", "raw", "reserved")

    def __init__(self, limits: ReceiveLimits, now: float) -> None:
        self.framing = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.head_bytes)
        self.raw = bytearray()
        self.head_deadline: float | None = now + limits.head_timeout_s
        self.deadline = now + limits.receive_timeout_s
        self.reserved = 0


class _Refusal(Exception):
    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def json_error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A whole ``Connection: close`` HTTP/1.1 answer with modelfn's error body."""
    body = orjson.dumps({"error": message})
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close", *(f"{k}: {v}" for k, v in headers)]  # fmt: skip
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class _ReceivedRequest(Request):
    _policy_expect_continue = False  # the receiving stage has sent "100 Continue" already, where asked


class _ReceivedParser(RequestParser):
    mesg_class = _ReceivedRequest


class ReceivingWorker(ThreadWorker):
    """gunicorn's ``gthread`` worker, receiving each request whole in its main loop (see the module)."""

    limits = ReceiveLimits()

    def init_process(self) -> None:
        self.receiving: dict[Any, _Receipt] = {}
        self.lingering: dict[Any, float] = {}
        self.buffered = 0
        super().init_process()

    # -- gunicorn's entry points ------------------------------------------------------------

    def enqueue_req(self, conn: Any) -> None:
        """A new or kept-alive connection with something to read: receive its request first."""
        if getattr(conn, "modelfn_complete", False):
            conn.modelfn_complete = False
            super().enqueue_req(conn)
            return
        receipt = _Receipt(self.limits, time.monotonic())
        self.receiving[conn] = receipt
        if conn.parser is not None:  # bytes a kept-alive client already sent behind its last request
            pending = conn.parser.unreader.take_buffered()
            if pending and not self._take(conn, receipt, pending):
                return
        conn.sock.setblocking(False)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def finish_request(self, conn: Any, fs: Any) -> None:
        self._release(conn)
        super().finish_request(conn, fs)

    def murder_pending(self) -> None:
        """Called by gunicorn's loop about once a second: also end receipts and lingers past their time."""
        super().murder_pending()
        now = time.monotonic()
        for conn, receipt in list(self.receiving.items()):
            if not receipt.raw and (not self.alive or now > receipt.deadline or now > (receipt.head_deadline or 0)):
                self._drop(conn)  # an idle connection (or any, when stopping) that has sent nothing: just closed
            elif receipt.head_deadline is not None and now > receipt.head_deadline:
                self._refuse(conn, _Refusal(408, f"request head not received within {self.limits.head_timeout_s:g} s"))
            elif now > receipt.deadline:
                self._refuse(conn, _Refusal(408, f"request not received within {self.limits.receive_timeout_s:g} s"))
        for sock, until in list(self.lingering.items()):
            if now > until:
                self._end_linger(sock)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's own refusals (its parser is stricter than h11 in places), as JSON."""
        status = _client_status(exc)
        if status is None:
            log.error("server error handling a request", exc_info=exc)
            status, message = 500, "internal error; see the function's log"
        else:
            message = _short(str(exc) or type(exc).__name__)
            log.warning("refused a request from %s: %s", (addr or ("?",))[0], message)
        try:
            client.settimeout(_LINGER_S)
            client.sendall(json_error(status, message))
        except OSError:
            pass

    # -- receiving --------------------------------------------------------------------------

    def _on_readable(self, conn: Any, sock: Any) -> None:
        try:
            self._receive(conn, sock)
        except Exception:  # one connection's surprise must not end the loop every connection shares
            log.exception("error receiving a request; connection dropped")
            if conn in self.receiving:  # not already answered, dropped or handed to a thread
                self._drop(conn)

    def _receive(self, conn: Any, sock: Any) -> None:
        try:
            data = sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        self.poller.unregister(sock)  # _take's outcomes each decide what the socket waits for next
        if not data:  # the client went away before its request was whole
            self._drop(conn)
        elif self._take(conn, self.receiving[conn], data):
            self.poller.register(sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _take(self, conn: Any, receipt: _Receipt, data: bytes) -> bool:
        """Add bytes to a receipt (its socket not registered); True while more are wanted."""
        receipt.raw += data
        try:
            self._reserve(receipt, len(receipt.raw))
            receipt.framing.receive_data(data)
            while True:
                event = receipt.framing.next_event()
                if event is h11.NEED_DATA:
                    return True
                if isinstance(event, h11.Request):
                    self._on_head(conn, receipt, event)
                elif isinstance(event, h11.EndOfMessage):
                    self._dispatch(conn, receipt)
                    return False
                elif isinstance(event, h11.ConnectionClosed):
                    self._drop(conn)
                    return False
        except h11.RemoteProtocolError as exc:
            self._refuse(conn, _Refusal(exc.error_status_hint, self._framing_message(exc)))
        except _Refusal as refusal:
            self._refuse(conn, refusal)
        return False

    def _on_head(self, conn: Any, receipt: _Receipt, request: h11.Request) -> None:
        receipt.head_deadline = None
        head_size = len(receipt.raw) - len(receipt.framing.trailing_data[0])  # h11 bounds only a head in parts
        if head_size > self.limits.head_bytes:
            raise _Refusal(431, self._head_too_large())
        names = {name for name, _ in request.headers}
        if b"content-length" in names and b"transfer-encoding" in names:  # read two ways by two servers: smuggling
            raise _Refusal(400, "malformed request: both Content-Length and Transfer-Encoding")
        declared = next((value for name, value in request.headers if name == b"content-length"), b"0")
        if int(declared) > self.limits.body_bytes:  # h11 has checked it is decimal digits
            limit = self.limits.body_bytes
            raise _Refusal(413, f"request body of {int(declared)} bytes is over the {limit}-byte limit")
        self._reserve(receipt, len(receipt.raw) + int(declared))
        if receipt.framing.they_are_waiting_for_100_continue:
            with contextlib.suppress(OSError):
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _framing_message(self, exc: h11.RemoteProtocolError) -> str:
        return self._head_too_large() if exc.error_status_hint == 431 else "malformed request: " + _short(str(exc))

    def _head_too_large(self) -> str:
        return f"request head (request line and headers) over the {self.limits.head_bytes}-byte limit"

    def _reserve(self, receipt: _Receipt, size: int) -> None:
        largest = self.limits.head_bytes + self.limits.body_bytes + _FRAMING  # one whole request on the wire
        if len(receipt.raw) > largest:
            raise _Refusal(413, f"request body over the {self.limits.body_bytes}-byte limit")
        if size <= receipt.reserved:
            return
        # The buffer always holds one request of the largest size: a body over the limit, alone, is a
        # 413 however its bytes arrive (by 256 KiB reads it could pass the buffer before the limit).
        if self.buffered + size - receipt.reserved > max(self.limits.buffer_bytes, largest):
            raise _Refusal(503, "the server is receiving too many request bodies at once; retry shortly",
                           (("Retry-After", "1"),))  # fmt: skip
        self.buffered += size - receipt.reserved
        receipt.reserved = size

    def _dispatch(self, conn: Any, receipt: _Receipt) -> None:
        """The request is whole: pre-feed it to gunicorn's parser and give it to a thread."""
        del self.receiving[conn]
        conn.modelfn_reserved = receipt.reserved
        if conn.parser is None:
            conn.parser = _ReceivedParser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(receipt.raw))
        conn.data_ready = True  # gunicorn must not wait for the socket to be readable: all is here
        conn.modelfn_complete = True
        self.enqueue_req(conn)

    # -- leaving ----------------------------------------------------------------------------

    def _release(self, conn: Any) -> None:
        self.buffered -= getattr(conn, "modelfn_reserved", 0)
        conn.modelfn_reserved = 0
        receipt = self.receiving.pop(conn, None)
        if receipt is not None:
            self.buffered -= receipt.reserved

    def _drop(self, conn: Any) -> None:
        self._release(conn)
        self._unregister(conn.sock)  # where it is registered
        self.nr_conns -= 1
        conn.close()

    def _refuse(self, conn: Any, refusal: _Refusal) -> None:
        """Answer a refusal, then read and discard what the client still sends for a moment, and close."""
        log.warning("refused a request from %s: %s", conn.client[0] if conn.client else "?", refusal)
        self._release(conn)
        self._unregister(conn.sock)  # where it is registered
        self.nr_conns -= 1
        sock = conn.sock
        try:
            sock.send(json_error(refusal.status, str(refusal), refusal.headers))
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        if len(self.lingering) >= _MAX_LINGERING:  # lingering sockets are outside gunicorn's connection count
            sock.close()
            return
        self.lingering[sock] = time.monotonic() + _LINGER_S
        self.poller.register(sock, selectors.EVENT_READ, self._on_linger_readable)

    def _on_linger_readable(self, sock: Any) -> None:
        try:
            if sock.recv(_CHUNK):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._end_linger(sock)

    def _end_linger(self, sock: Any) -> None:
        self.lingering.pop(sock, None)
        self._unregister(sock)
        sock.close()

    def _unregister(self, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(sock)


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


_CLIENT_ERRORS: tuple[tuple[type[BaseException], int], ...] = (
    (http_errors.LimitRequestLine, 414),
    (http_errors.LimitRequestHeaders, 431),
    (http_errors.ExpectationFailed, 417),
    (http_errors.UnsupportedTransferCoding, 501),
    (http_errors.ParseException, 400),
)


def _client_status(exc: BaseException) -> int | None:
    """The status of a request gunicorn refused, or None where the fault is the server's."""
    server_faults = (http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName,
                     http_errors.ConfigurationProblem)  # fmt: skip
    if isinstance(exc, server_faults):
        return None
    for kind, status in _CLIENT_ERRORS:
        if isinstance(exc, kind):
            return status
    return None


def worker_class(limits: ReceiveLimits) -> type[ReceivingWorker]:
    """The worker class gunicorn is given, with this server's limits (inherited by the forked worker)."""
    return type("ReceivingWorker", (ReceivingWorker,), {"limits": limits})
