"""The process-global model cache: each model is loaded once, even under a stampede.

The first request for a model starts its load on a background thread; that
request and every concurrent one wait on the same flight, each for at most
``wait_s``. A load that fails is forgotten, so a later request tries again
(the process never dies of a bad artifact), and every waiter of the failed
flight gets a 503 with the reason. A load that has not finished after ``timeout_s`` (a store
that stalls mid-read, a file that never ends) is abandoned: its waiters get a 503, and the next
request starts a fresh load; whatever the abandoned thread returns later is dropped.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from modelfn.errors import ModelfnError, ModelNotReady

T = TypeVar("T")
log = logging.getLogger("modelfn")


class LoadState(enum.Enum):
    IDLE = "idle"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"

    @property
    def is_ready(self) -> bool:
        return self is LoadState.READY


class _Flight(Generic[T]):
    """One load in progress; waiters block on ``done``."""

    __slots__ = ("done", "error", "started", "value")

    def __init__(self, value: T | None = None) -> None:
        self.done = threading.Event()
        self.started = time.monotonic()
        self.value = value
        self.error: str | None = None


class ModelCache(Generic[T]):
    """Single-flight, process-global cache of loaded models, keyed by a string."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, T] = {}
        self._flights: dict[str, _Flight[T]] = {}
        self._errors: dict[str, str] = {}
        #: How many loads were started, per key (a stampede must leave this at 1).
        self.loads_started: dict[str, int] = {}

    def get(self, key: str, load: Callable[[], T], wait_s: float, *, timeout_s: float = 0.0) -> T:
        """The value for ``key``, loading it once; wait at most ``wait_s`` for a load in flight.

        ``timeout_s`` (0: none) bounds a load: one in flight for longer is abandoned and started again.
        """
        value = self._values.get(key)
        if value is not None:  # the hot path: no lock
            return value
        flight = self._start(key, load, timeout_s)
        if not flight.done.wait(wait_s):
            # Keys name files and digests: keep them out of what callers see.
            raise ModelNotReady(f"the model is still loading after {wait_s:g} s; retry shortly", retry_after_s=2)
        if flight.error is not None:
            raise ModelNotReady(f"the model could not be loaded: {flight.error}")
        assert flight.value is not None
        return flight.value

    def start(self, key: str, load: Callable[[], T], *, timeout_s: float = 0.0) -> None:
        """Begin loading ``key`` in the background unless it is loaded or loading."""
        if key not in self._values:
            self._start(key, load, timeout_s)

    def state(self, key: str) -> LoadState:
        if key in self._values:
            return LoadState.READY
        if key in self._flights:
            return LoadState.LOADING
        return LoadState.FAILED if key in self._errors else LoadState.IDLE

    def last_error(self, key: str) -> str | None:
        return self._errors.get(key)

    def peek(self, key: str) -> T:
        """The loaded value for ``key`` (``KeyError`` if it is not loaded); no load is started."""
        return self._values[key]

    def discard(self, key: str) -> None:
        """Forget one loaded model; requests still holding it finish with it (it is immutable)."""
        with self._lock:
            self._values.pop(key, None)
            self._errors.pop(key, None)

    def clear(self) -> None:
        """Forget every loaded model (for tests and reloads); flights in progress finish."""
        with self._lock:
            self._values.clear()
            self._errors.clear()

    def _start(self, key: str, load: Callable[[], T], timeout_s: float = 0.0) -> _Flight[T]:
        with self._lock:
            if key in self._values:  # finished between the lock-free check and here
                finished: _Flight[T] = _Flight(value=self._values[key])
                finished.done.set()
                return finished
            running = self._flights.get(key)
            if running is not None and timeout_s and time.monotonic() - running.started > timeout_s:
                log.error("loading %s did not finish within %g s: abandoned, loading again", key, timeout_s)
                running.error = f"the load did not finish within {timeout_s:g} s; it is being retried"
                self._errors[key] = running.error
                del self._flights[key]
                running.done.set()
                running = None
            if running is not None:
                return running
            flight: _Flight[T] = _Flight()
            self._flights[key] = flight
            self.loads_started[key] = self.loads_started.get(key, 0) + 1
        # A dedicated thread: a waiter that gives up (or a client that hangs up)
        # never abandons a half-done load.
        threading.Thread(target=self._run, args=(key, load, flight), name=f"modelfn-load-{key}", daemon=True).start()
        return flight

    def _run(self, key: str, load: Callable[[], T], flight: _Flight[T]) -> None:
        try:
            value = load()
        except ModelfnError as exc:
            log.error("loading %s failed: %s", key, exc.message)
            self._finish(key, flight, error=exc.message)
        except BaseException as exc:
            log.exception("loading %s crashed", key)
            self._finish(key, flight, error=f"{type(exc).__name__} while loading (see the function's log)")
        else:
            self._finish(key, flight, value=value)

    def _finish(self, key: str, flight: _Flight[T], *, value: T | None = None, error: str | None = None) -> None:
        with self._lock:
            if self._flights.get(key) is not flight:  # abandoned for taking too long: a newer load decides
                log.warning("an abandoned load of %s ended after %.1f s; its result is dropped", key,
                            time.monotonic() - flight.started)  # fmt: skip
                return
            if value is not None:
                self._values[key] = value
                self._errors.pop(key, None)
            else:
                self._errors[key] = error or "unknown error"
            del self._flights[key]
            flight.value, flight.error = value, error
        flight.done.set()


#: The one cache of this process: models outlive requests and app objects.
GLOBAL_CACHE: ModelCache = ModelCache()
