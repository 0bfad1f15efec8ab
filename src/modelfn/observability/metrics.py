"""What a function counts, kept in plain Python so recording costs nothing at start-up.

Every request records its model, version, route, status and latency; loads record their phases
(the first load of a process is its cold start); the cache records hits, misses and evictions;
micro-batching records batch sizes; shadow traffic records agreement; automatic rollback records
its events. ``GET /metrics`` turns this into the Prometheus text format with prometheus-client
(:mod:`modelfn.protocols.metrics`), which is imported only when scraped: importing it costs
about 55 ms, which a cold start must not pay.

The per-request context (:data:`CONTEXT`) carries what the route, the model and the traffic
policy learn about a request while it is handled, so the one request line and the metrics can
name them.
"""

from __future__ import annotations

import bisect
import threading
import time
from contextvars import ContextVar
from typing import Any, NamedTuple

#: Latency buckets in seconds: sub-millisecond ONNX calls to the 30 s deadline.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LOAD_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


#: Request body sizes, in classes 16x apart, within which latencies are compared.
SIZE_CLASSES = ("<1KiB", "<16KiB", "<256KiB", "<4MiB", ">=4MiB")
_SIZE_BOUNDS = (1 << 10, 1 << 14, 1 << 18, 1 << 22)


def size_class(size: int) -> str:
    """The :data:`SIZE_CLASSES` entry of a request body of ``size`` bytes."""
    for bound, name in zip(_SIZE_BOUNDS, SIZE_CLASSES, strict=False):
        if size < bound:
            return name
    return SIZE_CLASSES[-1]


def version_fault(status: int) -> bool | None:
    """Whether an answer counts against the version that gave it; None: it says nothing of the version.

    4xx are the caller's (bad input, no key, too large); 503 the instance's (overloaded, loading);
    501 and 505 the protocol's. 500 (the model or a hook raised) and 504 (it did not answer in
    time) are the version's.
    """
    if status < 400:
        return False
    if status in (500, 504):
        return True
    return None


class RequestContext:
    """What is learned about one request while it is handled (mutable, one per request)."""

    __slots__ = (
        "chosen", "cold", "deadline", "draw", "model", "pinned", "request", "route", "shadow", "version", "watch",
    )  # fmt: skip

    def __init__(self, draw: float = 0.0, request: Any = None) -> None:
        #: The request being handled (a traffic policy's sticky key is read from it).
        self.request = request
        #: The canary watch of the traffic policy that chose this request's version, if any.
        self.watch: Any = None
        #: Whether a traffic split drew this request's version (not the URL, not a shadow copy):
        #: only those requests judge a canary.
        self.chosen = False
        #: Whether the request waited for its model to load (its latency says nothing of the model).
        self.cold = False
        self.route: str = ""
        self.model: str = ""
        self.version: str = ""
        #: In [0, 1): which share of a traffic split this request falls in (random, or a sticky key's hash).
        self.draw = draw
        #: A version this request must be served by (a shadow replay, or one named in the URL).
        self.pinned: str = ""
        #: The shadow version to mirror this request to after it is answered, if any.
        self.shadow: str = ""
        #: When the client stops waiting (monotonic seconds; a gRPC deadline), if it said: a model
        #: call gets no more time than this, or than ``request_timeout_s``, whichever ends first.
        self.deadline: float | None = None


CONTEXT: ContextVar[RequestContext | None] = ContextVar("modelfn_request", default=None)


class Histogram:
    """Cumulative-bucket counts, a sum and a count, like a Prometheus histogram."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, count of observations <= le), ..., ("+Inf", count)]``."""
        running, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return buckets

    def quantile(self, q: float) -> float:
        """An upper bound of the ``q`` quantile: the first bucket bound holding it (inf past the last)."""
        if self.count == 0:
            return float("nan")
        target, running = q * self.count, 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            if running >= target:
                return bound
        return float("inf")


class Sample(NamedTuple):
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float | Histogram


class Recorder:
    """Counters and histograms by label values, safe to update from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[tuple[str, tuple[str, ...]], float] = {}
        self.histograms: dict[tuple[str, tuple[str, ...]], Histogram] = {}
        self.gauges: dict[tuple[str, tuple[str, ...]], float] = {}
        self.started = time.time()

    def count(self, name: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        with self._lock:
            self._add(name, labels, amount)

    def observe(self, name: str, labels: tuple[str, ...], value: float, bounds: tuple[float, ...]) -> None:
        with self._lock:
            self._observe(name, labels, value, bounds)

    def _add(self, name: str, labels: tuple[str, ...], amount: float) -> None:
        """:meth:`count`, with the lock held."""
        key = (name, labels)
        self.counters[key] = self.counters.get(key, 0.0) + amount

    def _observe(self, name: str, labels: tuple[str, ...], value: float, bounds: tuple[float, ...]) -> None:
        """:meth:`observe`, with the lock held."""
        key = (name, labels)
        histogram = self.histograms.get(key)
        if histogram is None:
            histogram = self.histograms[key] = Histogram(bounds)
        histogram.observe(value)

    def gauge(self, name: str, labels: tuple[str, ...], value: float) -> None:
        with self._lock:
            self.gauges[(name, labels)] = value

    # -- what the function records ---------------------------------------------------------------
    def request(self, model: str, version: str, route: str, status: int, seconds: float) -> None:
        labels = (model, version, route)
        with self._lock:  # one hold for the request's counter and its latency
            self._add("requests", (*labels, str(status)), 1.0)
            if status >= 500:
                self._add("errors", labels, 1.0)
            self._observe("request_duration_seconds", labels, seconds, LATENCY_BUCKETS)

    def split_request(self, model: str, version: str, status: int, seconds: float, size: int) -> None:
        """A request a traffic split sent to ``version``, as the canary rule judges it (see runtime.traffic)."""
        fault = version_fault(status)
        if fault is None:
            return
        labels = (model, version, size_class(size))
        self.count("split_outcomes", (*labels, "fault" if fault else "ok"))
        self.observe("split_duration_seconds", labels, seconds, LATENCY_BUCKETS)

    def load(self, model: str, version: str, phases: dict[str, float]) -> None:
        """A model load, phase by phase; the process's first load is its cold start."""
        first = not any(name == "loads" for name, _ in self.counters)
        self.count("loads", (model, version))
        for phase, seconds in phases.items():
            self.observe("load_phase_seconds", (model, version, phase.split("(")[0]), seconds, LOAD_BUCKETS)
        if first:
            self.count("cold_starts", (model, version))
            for phase, seconds in phases.items():
                self.gauge("cold_start_phase_seconds", (model, version, phase.split("(")[0]), seconds)

    def snapshot(self) -> tuple[dict, dict, dict]:
        """Copies of the counters, histograms and gauges (histograms copied bucket by bucket)."""
        with self._lock:
            histograms = {}
            for key, histogram in self.histograms.items():
                copy = Histogram(histogram.bounds)
                copy.counts, copy.count, copy.total = list(histogram.counts), histogram.count, histogram.total
                histograms[key] = copy
            return dict(self.counters), histograms, dict(self.gauges)


#: The process's recorder: what ``GET /metrics`` reports.
RECORDER = Recorder()
