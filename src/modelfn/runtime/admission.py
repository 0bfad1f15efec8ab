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
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from modelfn.errors import DeadlineExceeded, Overloaded
from modelfn.runtime.deadline import WATCHDOG, shown

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
        self._pool = _Pool(f"modelfn-{name}", slots)
        # One lock for the slots, the queue and the counts: a free slot is taken in the same hold
        # that checks the queue (a Semaphore beside it cost two more lock round trips a call).
        self._lock = threading.Lock()
        self._slot_freed = threading.Condition(self._lock)
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
            running = self._running
            if len(running) >= self.slots:
                if self._waiting >= self.queue:
                    self.refused += 1
                    raise Overloaded(
                        f"model {self.name} is at capacity ({self.slots} running, {self.queue} waiting); retry shortly"
                    )
                self._wait_for_slot(expires, deadline_s)
            number = next(self._numbers)
            running[number] = time.monotonic()
        if inline:
            try:
                return WATCHDOG.run(call, expires)  # type: ignore[return-value]
            except DeadlineExceeded:
                self._count_timeout()
                raise
            finally:
                self._release(number)
        try:
            job = self._pool.submit(lambda: self._held(lambda: shown(call, expires), number))
        except BaseException:
            self._release(number)
            raise
        if job.wait(max(0.0, expires - time.monotonic())):
            return job.result()
        self._count_timeout()
        log.warning("model %s did not answer within %g s; the call keeps its slot until it ends",
                    self.name, deadline_s)  # fmt: skip
        raise DeadlineExceeded(f"model {self.name} did not answer within the {deadline_s:.3g} s deadline")

    def _wait_for_slot(self, expires: float, deadline_s: float) -> None:
        """Queue (lock held) until a slot is free; a 504 once ``expires`` passes first."""
        self._waiting += 1
        try:
            while len(self._running) >= self.slots:
                left = expires - time.monotonic()
                if left <= 0 or (not self._slot_freed.wait(left) and len(self._running) >= self.slots):
                    self.timed_out += 1
                    raise DeadlineExceeded(f"model {self.name} had no free slot within the {deadline_s:.3g} s deadline")
        finally:
            self._waiting -= 1

    def _held(self, call: Callable[[], T], number: int) -> T:
        try:
            return call()
        finally:
            self._release(number)  # when the call really ends, not when its request gave up

    def _release(self, number: int) -> None:
        with self._lock:
            del self._running[number]
            if self._waiting:
                self._slot_freed.notify()

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


class _Job:
    """One call handed to the pool; ``wait`` blocks until it ends or the timeout passes."""

    __slots__ = ("_done", "call", "error", "value")

    def __init__(self, call: Callable[[], object]) -> None:
        self.call = call
        self.value: object = None
        self.error: BaseException | None = None
        self._done = threading.Lock()
        self._done.acquire()  # released by the worker: a lock is the cheapest one-shot signal

    def wait(self, timeout: float) -> bool:
        return self._done.acquire(timeout=timeout)

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class _Pool:
    """``size`` daemon threads, started on first use. Daemons, unlike ``ThreadPoolExecutor``'s: a call
    hung in a model must not keep the process from exiting after SIGTERM."""

    def __init__(self, name: str, size: int) -> None:
        self._name = name
        self._size = size
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._started = False
        self._lock = threading.Lock()

    def submit(self, call: Callable[[], object]) -> _Job:
        if not self._started:
            with self._lock:
                if not self._started:
                    for index in range(self._size):
                        threading.Thread(target=self._work, name=f"{self._name}-{index}", daemon=True).start()
                    self._started = True
        job = _Job(call)
        self._jobs.put(job)
        return job

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job.value = job.call()
            except BaseException as exc:  # handed to the waiting request, which raises it
                job.error = exc
            finally:
                job._done.release()
                job = None  # type: ignore[assignment]  # drop the call's references while idle
