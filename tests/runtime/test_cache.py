"""The single-flight cache with real threads and real (slow) loaders."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from modelfn.errors import ArtifactError, ModelNotReady
from modelfn.runtime.cache import LoadState, ModelCache


class SlowLoader:
    """Counts its calls; sleeps, then returns a fresh object or raises what it is told."""

    def __init__(self, seconds: float = 0.2, fail_with: BaseException | None = None) -> None:
        self.seconds, self.fail_with = seconds, fail_with
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> object:
        with self._lock:
            self.calls += 1
        time.sleep(self.seconds)
        if self.fail_with is not None:
            raise self.fail_with
        return object()


def test_a_stampede_of_first_requests_loads_once() -> None:
    cache: ModelCache = ModelCache()
    loader = SlowLoader(0.3)
    barrier = threading.Barrier(32)

    def first_request() -> object:
        barrier.wait()
        return cache.get("m", loader, wait_s=10)

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda _: first_request(), range(32)))
    assert loader.calls == 1
    assert cache.loads_started == {"m": 1}
    assert len({id(r) for r in results}) == 1
    assert cache.state("m") is LoadState.READY


def test_waiting_is_bounded() -> None:
    cache: ModelCache = ModelCache()
    started = time.monotonic()
    with pytest.raises(ModelNotReady, match=r"still loading after 0\.1 s") as caught:
        cache.get("m", SlowLoader(3.0), wait_s=0.1)
    assert time.monotonic() - started < 1.5  # far less than the load's 3 s, even on a busy machine
    assert caught.value.status == 503 and caught.value.headers["Retry-After"] == "2"
    assert cache.state("m") is LoadState.LOADING
    assert cache.get("m", SlowLoader(), wait_s=30) is not None  # the same flight finishes


def test_a_failed_load_answers_every_waiter_and_is_retried() -> None:
    cache: ModelCache = ModelCache()
    failing = SlowLoader(0.2, fail_with=ArtifactError("artifact digest mismatch for m"))
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(cache.get, "m", failing, 5) for _ in range(8)]
    for future in futures:
        with pytest.raises(ModelNotReady, match="could not be loaded: artifact digest mismatch"):
            future.result()
    assert failing.calls == 1
    assert cache.state("m") is LoadState.FAILED
    assert "digest mismatch" in cache.last_error("m")

    healthy = SlowLoader(0.0)
    assert cache.get("m", healthy, wait_s=5) is not None
    assert healthy.calls == 1 and cache.state("m") is LoadState.READY
    assert cache.last_error("m") is None


def test_an_unexpected_crash_in_a_loader_is_contained() -> None:
    cache: ModelCache = ModelCache()
    with pytest.raises(ModelNotReady, match="MemoryError while loading"):
        cache.get("m", SlowLoader(0.0, fail_with=MemoryError()), wait_s=5)


def test_start_loads_in_the_background() -> None:
    cache: ModelCache = ModelCache()
    loader = SlowLoader(0.2)
    cache.start("m", loader)
    cache.start("m", loader)
    assert cache.state("m") is LoadState.LOADING
    cache.get("m", loader, wait_s=5)
    assert loader.calls == 1


def test_discard_forgets_a_model_but_not_its_holders() -> None:
    cache: ModelCache = ModelCache()
    held = cache.get("m", SlowLoader(0.0), wait_s=5)
    cache.discard("m")
    assert cache.state("m") is LoadState.IDLE and held is not None
    again = SlowLoader(0.0)
    assert cache.get("m", again, wait_s=5) is not held and again.calls == 1


def test_a_load_that_hangs_is_abandoned_after_its_timeout_and_started_again() -> None:
    cache: ModelCache = ModelCache()
    release = threading.Event()
    hung = object()

    def hangs() -> object:  # a store that stalls mid-read, a cache entry that never ends
        release.wait(30)
        return hung

    with pytest.raises(ModelNotReady, match="still loading"):
        cache.get("m", hangs, wait_s=0.05, timeout_s=0.3)
    time.sleep(0.4)  # past the load's time bound
    fresh = cache.get("m", SlowLoader(0.0), wait_s=10, timeout_s=0.3)  # abandons the hung one, loads anew
    assert cache.loads_started == {"m": 2} and fresh is not hung
    release.set()  # the abandoned load ends after all: what it returns is dropped
    time.sleep(0.2)
    assert cache.get("m", SlowLoader(0.0), wait_s=10) is fresh
