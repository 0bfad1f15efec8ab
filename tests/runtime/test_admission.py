"""Admission control: slots, a bounded queue refused at once, deadlines that stop ONNX Runtime runs."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from modelfn.errors import DeadlineExceeded, Overloaded
from modelfn.function import ModelFunction
from modelfn.runtime.admission import Admission
from modelfn.settings import Settings


def _blocker() -> tuple[threading.Event, threading.Event, object]:
    started, release = threading.Event(), threading.Event()

    def call() -> str:
        started.set()
        release.wait(10)
        return "done"

    return started, release, call


@pytest.mark.parametrize("inline", [False, True])
def test_beyond_slots_and_queue_a_request_is_refused_at_once_then_served_again(inline) -> None:
    admission = Admission("m", slots=1, queue=1)
    started, release, call = _blocker()
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(admission.run, call, 10, inline=inline)
        assert started.wait(5)
        waiting = pool.submit(admission.run, lambda: "queued", 10, inline=inline)
        while admission.in_flight() < 2:
            time.sleep(0.001)
        began = time.monotonic()
        with pytest.raises(Overloaded, match="at capacity") as refused:
            admission.run(lambda: "never", 10, inline=inline)
        assert time.monotonic() - began < 5  # at once, not after waiting out its 10 s deadline
        assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "1"
        release.set()
        assert running.result(5) == "done" and waiting.result(5) == "queued"
    assert admission.run(lambda: "again", 10, inline=inline) == "again"
    assert (admission.refused, admission.in_flight()) == (1, 0)


def test_a_request_waiting_past_its_deadline_for_a_slot_gets_504() -> None:
    admission = Admission("m", slots=1, queue=4)
    started, release, call = _blocker()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(admission.run, call, 10)
        assert started.wait(5)
        began = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="no free slot") as late:
            admission.run(lambda: "never", 0.2)
        assert 0.15 < time.monotonic() - began < 5 and late.value.status == 504  # the blocker holds on for ever
        release.set()
        running.result(5)


def test_a_hung_call_answers_504_keeps_its_slot_and_wedges_the_model_until_it_ends() -> None:
    admission = Admission("m", slots=1, queue=0)
    started, release, call = _blocker()
    began = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"did not answer within the 0\.2 s"):
        admission.run(call, 0.2)
    assert 0.15 < time.monotonic() - began < 5  # at the deadline, not when the hung call ends (never)
    assert started.is_set() and admission.wedged(older_than_s=0.1)
    with pytest.raises(Overloaded):  # its slot is still taken, and no one may queue
        admission.run(lambda: "never", 1)
    release.set()
    deadline = time.monotonic() + 5
    while admission.wedged(older_than_s=0.0) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert admission.run(lambda: "free again", 1) == "free again"


def test_errors_of_the_call_reach_the_caller_and_free_the_slot() -> None:
    admission = Admission("m", slots=1, queue=0)

    def boom() -> None:
        raise ValueError("model failed")

    for inline in (False, True):
        with pytest.raises(ValueError, match="model failed"):
            admission.run(boom, 1, inline=inline)
    assert admission.run(lambda: 7, 1) == 7 and admission.in_flight() == 0


def test_an_onnx_run_past_the_deadline_is_stopped_and_its_slot_freed(tmp_path) -> None:
    """The watchdog sets RunOptions.terminate: the run ends within ms of the deadline, not when done."""
    from models import write_slow_function

    folder = write_slow_function(tmp_path / "slow")
    function = ModelFunction(folder, Settings(request_timeout_s=0.3, max_concurrency=1, max_queue=0))
    model = function.model()
    assert model.interruptible(hooks=True)
    x = np.eye(256, dtype=np.float32)

    def infer(trips: int) -> dict:
        inputs = {"x": x, "trips": np.array([trips], np.int64)}
        return function.run(lambda: model.infer(inputs), inline=True)

    began = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="deadline"):
        infer(10**8)  # minutes of work
    assert 0.25 < time.monotonic() - began < 10  # at the deadline, not after the minutes of work
    np.testing.assert_allclose(infer(3)["y"], x)  # the slot is free at once: nothing kept running
    assert function.wedged() is False
