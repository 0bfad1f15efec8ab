"""Faults injected into a live server: a model that raises, one that hangs, overload, SIGTERM mid-request.

Each answers its documented status, and the process survives (or, for SIGTERM, finishes
what it had and exits 0). Storage down at a cold start and a corrupted artifact are in
``test_registry_serving.py`` and ``test_digits_server.py``.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import yaml
from helpers import DIGITS, Server, faulty_function, running

pytestmark = pytest.mark.slow

EXAMPLE = yaml.safe_load((DIGITS / "modelfn.yaml").read_text())["example"]
OIP_BODY = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}


def predict(server: Server, timeout: float = 30, **extra) -> requests.Response:
    return requests.post(f"{server.url}/predict", json={**EXAMPLE, **extra}, timeout=timeout)


def test_a_model_that_raises_is_a_500_that_reveals_nothing_and_the_server_goes_on(tmp_path) -> None:
    with running(faulty_function(tmp_path), tmp_path / "serve.log") as server:
        for _ in range(20):
            failed = predict(server, **{"raise": True})
            assert failed.status_code == 500
            assert failed.json() == {"error": "internal error: the model failed; see the function's log"}
        assert predict(server).json()["digit"] == 2
        assert server.log().count("injected fault in the pre hook") >= 20  # the detail is in the log only


def test_a_model_that_hangs_answers_504_at_the_deadline_and_liveness_says_when_it_is_wedged(tmp_path) -> None:
    env = {"MODELFN_REQUEST_TIMEOUT_S": "1", "MODELFN_MAX_CONCURRENCY": "2", "MODELFN_MAX_QUEUE": "1"}
    with running(faulty_function(tmp_path), tmp_path / "serve.log", env) as server:
        assert predict(server).status_code == 200
        began = time.monotonic()
        hung = predict(server, sleep_s=600)
        assert hung.status_code == 504 and "did not answer within the 1 s deadline" in hung.json()["error"]
        assert 0.9 < time.monotonic() - began < 30  # at the 1 s deadline, not after the 600 s sleep
        # One slot hangs; the other still serves, through either route.
        assert predict(server).status_code == 200
        oip = requests.post(f"{server.url}/v2/models/digits/infer", json=OIP_BODY, timeout=10)
        assert oip.status_code == 200
        assert requests.get(f"{server.url}/v2/health/live", timeout=5).json() == {"live": True}

        assert predict(server, sleep_s=600).status_code == 504  # now both slots hang
        time.sleep(2.2)  # twice the deadline
        live = requests.get(f"{server.url}/v2/health/live", timeout=5)
        assert live.status_code == 503 and live.json()["live"] is False  # the platform should replace it
        waited = requests.post(f"{server.url}/v2/models/digits/infer", json=OIP_BODY, timeout=10)
        assert waited.status_code == 504 and "no free slot" in waited.json()["error"]
        assert requests.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200

        server.process.send_signal(signal.SIGTERM)  # hung model threads do not hold the exit up
        assert server.process.wait(10) == 0


def test_overload_is_refused_at_once_with_retry_after_and_the_server_recovers(tmp_path) -> None:
    env = {"THREADS": "32", "MODELFN_MAX_CONCURRENCY": "2", "MODELFN_MAX_QUEUE": "2"}
    with running(faulty_function(tmp_path), tmp_path / "serve.log", env) as server:
        assert predict(server).status_code == 200

        def timed() -> tuple[int, float, str | None]:
            began = time.monotonic()
            response = predict(server, sleep_s=2)
            return response.status_code, time.monotonic() - began, response.headers.get("Retry-After")

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda _: timed(), range(16)))
        served = [r for r in results if r[0] == 200]
        refused = [r for r in results if r[0] == 503]
        assert len(served) + len(refused) == 16
        assert 4 <= len(served) <= 6  # 2 running + 2 queued, and a few that came as slots freed
        # At once: a request that queued would wait 2 s for a slot.
        assert all(seconds < 1.0 and retry == "1" for _, seconds, retry in refused)
        assert predict(server).status_code == 200  # recovered at once


def test_sigterm_finishes_requests_in_flight_refuses_new_ones_and_exits_0(tmp_path) -> None:
    server = Server(faulty_function(tmp_path), tmp_path / "serve.log", {"MODELFN_GRACEFUL_TIMEOUT_S": "8"})
    try:
        server.wait_live()
        with ThreadPoolExecutor(4) as pool:
            inflight = [pool.submit(predict, server, 30, sleep_s=2) for _ in range(4)]
            time.sleep(0.7)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            # Never served: refused, or reset when the worker exits (no longer after the drain than that).
            with pytest.raises(requests.ConnectionError):
                requests.get(f"{server.url}/v2/health/live", timeout=15)
            answers = [future.result() for future in inflight]
        assert [a.status_code for a in answers] == [200] * 4 and {a.json()["digit"] for a in answers} == {2}
        assert server.process.wait(10) == 0
        log = server.log()
        assert "SIGTERM: no new connections; finishing" in log and "stopped after draining" in log
    finally:
        if server.process.poll() is None:
            server.process.kill()
        server.process.wait()


def test_a_path_the_framework_cannot_route_is_a_json_404(digits_server) -> None:
    """A newline in the path: Flask's router matches nothing; modelfn, answering before it, names the path."""
    response = requests.get(f"{digits_server.url}/v2/models/digits/versions/%C3%B3%0A", timeout=5)
    assert response.status_code == 404
    assert response.json() == {"error": "no route for GET /v2/models/digits/versions/\u00f3\n"}
