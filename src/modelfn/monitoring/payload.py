"""Payload logging: a sampled copy of a request and its answer, as a CloudEvents JSON record, in batches.

Turned on by ``MODELFN_PAYLOAD_LOG`` (a sink, see :mod:`modelfn.monitoring.sinks`), for the share
``MODELFN_PAYLOAD_SAMPLE`` of the requests that reach a model. Each record is one CloudEvent in
structured JSON, as KServe's payload logger writes one (``id`` is the request's: its
``X-Request-Id`` header, else the Open Inference Protocol body's ``id``, else a new one)::

    {"specversion": "1.0", "id": "...", "source": "modelfn/<instance>", "type": "org.modelfn.inference",
     "time": "2026-12-05T10:00:00.123Z", "datacontenttype": "application/json",
     "model": "digits", "modelversion": "1", "route": "/v2/models/{name}/infer", "status": 200,
     "latencyms": 0.81, "data": {"request": {...}, "response": {...}}}

A JSON body is kept as JSON, any other as ``{"base64": ...}``, a streamed answer as ``{"streamed": true}``,
and a body over :data:`MAX_BODY_BYTES` as its size alone. The contract's ``monitoring.payload`` fields are
left out or hashed before a record is written.

The request thread only appends to a bounded queue (:data:`MAX_QUEUED_BYTES` and ``MODELFN_PAYLOAD_QUEUE``
records); past either the record is dropped and counted. A background thread turns the queue into
records and writes a batch when ``MODELFN_PAYLOAD_BATCH`` records wait or ``MODELFN_PAYLOAD_FLUSH_S``
after the first; what is left is written at exit (SIGTERM included). Lambda freezes a process between
invocations, so there no thread is started: the adapter writes a due batch before the invocation returns.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

from modelfn.monitoring.records import Pending, cloud_event
from modelfn.observability.metrics import RECORDER

if TYPE_CHECKING:
    from modelfn.monitoring.sinks import Sink
    from modelfn.settings import Settings

log = logging.getLogger("modelfn")
#: A body larger than this is recorded as its size only.
MAX_BODY_BYTES = 256 << 10
#: Bytes of bodies the queue holds at most, whatever ``MODELFN_PAYLOAD_QUEUE`` allows.
MAX_QUEUED_BYTES = 32 << 20


class PayloadLog:
    """The process's payload log: a bounded queue, and the writer that empties it in batches."""

    def __init__(self, settings: Settings, sink: Sink, *, background: bool = True) -> None:
        self.sink = sink
        self.batch = settings.payload_batch
        self.flush_s = settings.payload_flush_s
        self.limit = settings.payload_queue
        self.hash_key = settings.payload_hash_key.encode()
        self.background = background
        #: Names this instance's files and the records' ``source``.
        self.instance = uuid.uuid4().hex[:12]
        self._queue: deque[Pending] = deque()
        self._queued_bytes = 0
        self._first_at = 0.0  # monotonic time of the oldest waiting record
        self._lock = threading.Lock()
        self._due = threading.Condition(self._lock)
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._writing = threading.Lock()  # one batch written at a time, in order
        atexit.register(self.close)

    def offer(self, pending: Pending) -> bool:
        """Queue a record (on the request thread: never blocks on I/O, never raises); False if dropped."""
        with self._lock:
            if self._closed or len(self._queue) >= self.limit or self._queued_bytes + pending.weight > MAX_QUEUED_BYTES:
                RECORDER.count("payload_records", (pending.model, "dropped"))
                return False
            if not self._queue:
                self._first_at = time.monotonic()
            self._queue.append(pending)
            self._queued_bytes += pending.weight
            if len(self._queue) >= self.batch:
                self._due.notify()
            start = self.background and self._thread is None
            if start:
                self._thread = threading.Thread(target=self._run, name="modelfn-payload-log", daemon=True)
        if start:
            self._thread.start()  # type: ignore[union-attr]  # set just above, under the lock
        return True

    def due(self) -> bool:
        """Whether a batch is full, or its oldest record has waited ``MODELFN_PAYLOAD_FLUSH_S``."""
        with self._lock:
            return bool(self._queue) and (
                len(self._queue) >= self.batch or time.monotonic() - self._first_at >= self.flush_s
            )

    def flush(self, *, whole_batches: bool = False) -> int:
        """Write the waiting records, a batch at a time; returns how many were written.

        ``whole_batches``: only full batches (the writer thread between its deadlines), so that
        records that keep coming do not make a file each.
        """
        written = 0
        with self._writing:
            while True:
                with self._lock:
                    if whole_batches and len(self._queue) < self.batch:
                        return written
                    taken = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
                    self._queued_bytes -= sum(p.weight for p in taken)
                    if self._queue:
                        self._first_at = time.monotonic()
                if not taken:
                    return written
                written += self._write(taken)

    def close(self) -> None:
        """Write what is left and stop taking records (at exit; SIGTERM ends in it too)."""
        with self._lock:
            self._closed = True
            self._due.notify()
        self.flush()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._closed:
                    if self._queue:
                        left = self.flush_s - (time.monotonic() - self._first_at)
                        if len(self._queue) >= self.batch or left <= 0:
                            break
                        self._due.wait(left)
                    else:
                        self._due.wait()
                if self._closed:
                    return  # close() writes the rest
                whole = len(self._queue) >= self.batch
            self.flush(whole_batches=whole)

    def _write(self, taken: list[Pending]) -> int:
        by_model: dict[str, list[bytes]] = {}
        for number, pending in enumerate(taken):
            if number % 8 == 7:
                time.sleep(0)  # let request threads take the GIL: a batch is built in slices, not one long hold
            try:
                by_model.setdefault(pending.model, []).append(cloud_event(pending, self.instance, self.hash_key))
            except Exception:  # a record that cannot be written is lost, counted; never the batch
                log.exception("payload record of %s could not be made", pending.model)
                RECORDER.count("payload_records", (pending.model, "failed"))
        written = 0
        for model, records in by_model.items():
            try:
                self.sink.write(model, records, instance=self.instance, sequence=next(self._sequence))
            except Exception as exc:
                message = getattr(exc, "message", None) or type(exc).__name__
                log.warning("payload log: %d record(s) of %s lost: %s", len(records), model, message)
                RECORDER.count("payload_records", (model, "failed"), len(records))
                continue
            RECORDER.count("payload_records", (model, "written"), len(records))
            written += len(records)
        return written


_LOGS: dict[str, PayloadLog] = {}
_LOGS_LOCK = threading.Lock()


def payload_log(settings: Settings, *, background: bool = True) -> PayloadLog:
    """The process's payload log for ``settings.payload_log`` (made on first use)."""
    found = _LOGS.get(settings.payload_log)
    if found is not None:
        return found
    with _LOGS_LOCK:
        found = _LOGS.get(settings.payload_log)
        if found is None:
            from modelfn.monitoring.sinks import open_sink

            sink = open_sink(settings.payload_log, settings.store_attempts)
            found = _LOGS[settings.payload_log] = PayloadLog(settings, sink, background=background)
        return found


def record_request(settings: Settings, request: Any, response: Any, context: Any, seconds: float,
                   fields: Any) -> None:  # fmt: skip
    """Offer a copy of an answered model request to the payload log (the caller drew the sample)."""
    body, answer = request.body, response.body
    pending = Pending(
        model=context.model,
        version=context.version,
        route=context.route,
        status=response.status,
        latency_s=seconds,
        at=time.time(),
        request=body if len(body) <= MAX_BODY_BYTES else None,
        request_size=len(body),
        request_type=request.headers.get("Content-Type", ""),
        response=answer if len(answer) <= MAX_BODY_BYTES else None,
        response_size=len(answer),
        response_type=response.headers.get("Content-Type", ""),
        streamed=response.stream is not None,
        request_id=request.headers.get("X-Request-Id", "")[:128],
        fields=fields,
    )
    payload_log(settings).offer(pending)
