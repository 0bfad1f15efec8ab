"""Admission control for one model: a few calls at once, a short queue, a deadline for each.

A model call runs on one of ``slots`` threads of the model's own pool; up to
``queue`` more requests may wait for one. A request beyond that is refused at
once (:class:`~modelfn.errors.Overloaded`, 503 with ``Retry-After``): under
overload, fast refusals that a client or load balancer can retry elsewhere beat
latency growing for everyone, and the memory held by waiting requests stays
bounded.

A request waits for a slot at most until its deadline, then answers 504
(:class:`~modelfn.errors.DeadlineExceeded`). A plain ONNX Runtime call runs on
the request's thread and is stopped at the deadline (:mod:`modelfn.runtime.deadline`);
any other call (hooks, scikit-learn, TensorFlow: Python that cannot be stopped from
outside) runs on the model's own pool while the request waits for it until its
deadline. A call that goes on past it keeps its slot until it ends. A model that hangs
therefore uses up its own slots and no more: the other models, health checks
and the process itself keep answering, and :meth:`Admission.wedged` tells the
liveness route that this instance should be replaced.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from modelfn.errors import DeadlineExceeded, Overloaded
from modelfn.runtime.deadline import WATCHDOG

T = TypeVar("T")
log = logging.getLogger("modelfn")


class Admission:
    """Bounded concurrency and queueing for one model's calls; thread-safe."""

    def __init__(self, name: str, slots: int, queue: int) -> None:
        if slots < 1 or queue < 0:
            raise ValueError("slots must be at least 1 and queue not negative")
        self.name = name
        self.slots = slots
        self.queue = queue
        self._free = threading.Semaphore(slots)
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=f"modelfn-{name}")
        self._lock = threading.Lock()
        self._waiting = 0
        self._running: dict[int, float] = {}  # call number -> monotonic start
        self._numbers = itertools.count()
        #: Requests refused at once because every slot and queue place was taken.
        self.refused = 0
        #: Requests answered 504 because their deadline passed.
        self.timed_out = 0

    def run(self, call: Callable[[], T], deadline_s: float, *, inline: bool = False) -> T:
        """``call()`` in a slot, within ``deadline_s`` in all; raises 503 or 504 as documented.

        ``inline``: the call can be stopped through :mod:`modelfn.runtime.deadline` (a plain ONNX
        Runtime run), so it runs on this thread; any other call runs on the model's pool, and this
        thread stops waiting for it at the deadline.
        """
        expires = time.monotonic() + deadline_s
        with self._lock:
            if len(self._running) >= self.slots and self._waiting >= self.queue:
                self.refused += 1
                raise Overloaded(
                    f"model {self.name} is at capacity ({self.slots} running, {self.queue} waiting); retry shortly"
                )
            self._waiting += 1
        acquired = False
        try:
            acquired = self._free.acquire(timeout=deadline_s)
        finally:
            with self._lock:
                self._waiting -= 1
                number = next(self._numbers)
                if acquired:
                    self._running[number] = time.monotonic()
        if not acquired:
            self._count_timeout()
            raise DeadlineExceeded(f"model {self.name} had no free slot within the {deadline_s:g} s deadline")
        if inline:
            try:
                return WATCHDOG.run(call, expires)  # type: ignore[return-value]
            except DeadlineExceeded:
                self._count_timeout()
                raise
            finally:
                self._release(number)
        try:
            future = self._pool.submit(self._held, call, number)
        except BaseException:
            self._release(number)
            raise
        try:
            return future.result(timeout=max(0.0, expires - time.monotonic()))
        except FutureTimeout:
            self._count_timeout()
            log.warning("model %s did not answer within %g s; the call keeps its slot until it ends",
                        self.name, deadline_s)  # fmt: skip
            raise DeadlineExceeded(f"model {self.name} did not answer within the {deadline_s:g} s deadline") from None

    def _held(self, call: Callable[[], T], number: int) -> T:
        try:
            return call()
        finally:
            self._release(number)  # when the call really ends, not when its request gave up

    def _release(self, number: int) -> None:
        with self._lock:
            del self._running[number]
        self._free.release()

    def _count_timeout(self) -> None:
        with self._lock:
            self.timed_out += 1

    def in_flight(self) -> int:
        """Calls running and requests waiting for a slot."""
        with self._lock:
            return len(self._running) + self._waiting

    def wedged(self, older_than_s: float) -> bool:
        """Whether every slot has run one call for longer than ``older_than_s``: nothing can get through."""
        now = time.monotonic()
        with self._lock:
            stuck = sum(1 for started in self._running.values() if now - started > older_than_s)
        return stuck >= self.slots
