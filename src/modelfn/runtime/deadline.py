"""Deadlines that reach into a running model call.

A call that can be stopped from outside (an ONNX Runtime run: ``RunOptions.terminate``)
runs on the request's own thread, with its :class:`Deadline` in a thread-local
where the predictor finds it. One watchdog thread per process keeps the
deadlines in a heap and, when one passes, calls what the predictor registered,
which ends the run; the request then answers 504. Calls that cannot be stopped
are handed to another thread instead (see :mod:`modelfn.runtime.admission`).

Finished deadlines are dropped from the heap's head by the next call, so the heap
holds about as many entries as there are calls running, whatever the request rate.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable

from modelfn.errors import DeadlineExceeded

_local = threading.local()
#: How long the idle watchdog sleeps before it looks again by itself.
IDLE_WAKE_S = 1.0


class Deadline:
    """One call's deadline; ``on_expiry`` registers how to stop the call."""

    __slots__ = ("_cancel", "at", "expired", "finished")

    #: One lock for every deadline's state: each hold is a few assignments, and a lock made per call
    #: cost more than the whole deadline's bookkeeping.
    _lock = threading.Lock()

    def __init__(self, at: float) -> None:
        self.at = at
        self.expired = False
        self.finished = False
        self._cancel: Callable[[], None] | None = None

    def on_expiry(self, cancel: Callable[[], None]) -> None:
        """Run ``cancel`` when the deadline passes; raises 504 at once if it already has."""
        with self._lock:
            if self.expired:
                raise DeadlineExceeded("the request's deadline passed before the model ran")
            self._cancel = cancel

    def expire(self) -> None:
        with self._lock:
            if self.finished:
                return
            self.expired = True
            cancel = self._cancel
        if cancel is not None:
            cancel()


def current() -> Deadline | None:
    """The deadline of the call running on this thread, if it can be stopped."""
    return getattr(_local, "deadline", None)


def shown(call: Callable[[], object], at: float) -> object:
    """``call()`` with a deadline at monotonic ``at`` that it can read (:func:`current`) but that stops nothing:
    for a call that cannot be stopped from outside and can end itself in time (a generation between two tokens)."""
    _local.deadline = Deadline(at)
    try:
        return call()
    finally:
        _local.deadline = None


class Watchdog:
    """Expires deadlines on time, from one lazily started daemon thread."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        #: When the watchdog will look again by itself (monotonic; inf: only when notified).
        self._sleeping_until = math.inf

    def run(self, call: Callable[[], object], at: float) -> object:
        """``call()`` on this thread with a deadline at monotonic time ``at`` visible to the predictor."""
        deadline = Deadline(at)
        with self._wake:
            heap = self._heap
            while heap and heap[0][2].finished:  # keep the heap as small as the calls in flight
                heapq.heappop(heap)
            heapq.heappush(heap, (at, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="modelfn-deadlines", daemon=True)
                self._thread.start()
            elif at < self._sleeping_until:  # else the watchdog wakes in time anyway: no context switch
                self._wake.notify()
        _local.deadline = deadline
        try:
            return call()
        finally:
            _local.deadline = None
            with deadline._lock:
                deadline.finished = True

    def _loop(self) -> None:
        with self._wake:
            while True:
                heap = self._heap
                if not heap:
                    # Idle, it still looks again within IDLE_WAKE_S rather than only when notified: a
                    # call's deadline, seconds away, is then past the watchdog's wake and needs no
                    # notify. Waking it on every call put a thread switch on every request (~15 us).
                    self._sleeping_until = time.monotonic() + IDLE_WAKE_S
                    self._wake.wait(IDLE_WAKE_S)
                    continue
                at, _, deadline = heap[0]
                if deadline.finished:
                    heapq.heappop(heap)
                    continue
                delay = at - time.monotonic()
                if delay > 0:
                    self._sleeping_until = at
                    self._wake.wait(delay)
                    continue
                heapq.heappop(heap)
                deadline.expire()


WATCHDOG = Watchdog()
