"""Micro-batching: concurrent calls for one model run as one inference, each caller gets its own rows.

No thread of its own, so a request alone pays nothing: a caller that finds a
free leader slot (``max_concurrent_batches`` of them) becomes a *leader* and runs
the queue in batches, on its own thread, until its own call is answered; then it
hands its slot to the next waiting caller (so no request keeps serving others
forever) or, with nothing queued, gives the slot back. Several slots let batches
run side by side on several CPUs, as unbatched requests would. Batches form from the calls that arrive while a
batch is running; ``max_wait_ms`` lets a batch that already has company wait a
little for more, but never a request that is alone.

A batch joins calls whose tensors agree past the first dimension and that ask
for the same outputs, up to ``max_batch_size`` rows. If the batched inference
fails, each call in it is run alone, so only the call at fault gets the error.

Batching is for models whose every call is expensive. When a model loads,
:meth:`BatchingPredictor.calibrate` times one row against a batch; where a batch
saves less than :data:`MIN_SAVING_S` a row, calls go straight to the model.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

#: Below this saving per row, batching costs more than it gives: handing a batch's answers to the
#: waiting request threads costs tens of microseconds each on a busy CPU. Measured here: the digits
#: ONNX model saves 16 us a row (and lost 23% of its throughput at concurrency 16 when batched),
#: its Keras original 2.7 ms (4.9x the throughput batched), MobileNetV2 4.1 ms.
MIN_SAVING_S = 100e-6
#: Time spent timing at most, per side, when a model loads.
_CALIBRATION_BUDGET_S = 0.05

if TYPE_CHECKING:
    from modelfn.contract import Batching
    from modelfn.runtime.predictors import Predictor


class _Call:
    """One caller's inputs, and where its answer (or error) is left."""

    __slots__ = ("done", "error", "inputs", "key", "outputs", "promoted", "result", "rows", "wake")

    def __init__(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]) -> None:
        self.inputs = inputs
        self.outputs = tuple(outputs)
        first = next(iter(inputs.values()))
        self.rows = int(first.shape[0])
        # Calls can share a batch only when they agree on everything but the number of rows.
        self.key = (self.outputs, tuple((name, a.dtype.str, a.shape[1:]) for name, a in sorted(inputs.items())))
        self.result: dict[str, np.ndarray] | None = None
        self.error: BaseException | None = None
        self.done = False
        #: Handed a leader slot: it must lead, or give the slot back, even if its call got answered meanwhile.
        self.promoted = False
        self.wake = threading.Event()

    def finish(self, result: dict[str, np.ndarray] | None = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.done = result, error, True
        self.wake.set()


class BatchingPredictor:
    """Wraps a predictor; same interface, thread-safe. ``calls`` and ``batches`` count what it did."""

    def __init__(self, inner: Predictor, policy: Batching, *, model: str = "") -> None:
        self._inner = inner
        self._model = model  # the name batch sizes are counted under (modelfn.observability.metrics)
        self._max_rows = policy.max_batch_size
        self._max_wait_s = policy.max_wait_ms / 1000
        self._queue: deque[_Call] = deque()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._slots = policy.max_concurrent_batches
        self._leaders = 0
        self.calls = 0
        self.batches = 0
        #: Whether calls are batched; :meth:`calibrate` turns it off where batching would not pay.
        self.enabled = True

    def calibrate(self, sample: Mapping[str, np.ndarray], output_names: Sequence[str]) -> float:
        """Time one row against a batch of up to 8; keep batching only if it saves ``MIN_SAVING_S`` a row.

        Returns the measured saving per row, in seconds. A model whose single call already takes
        less than the threshold is decided after that one timing.
        """
        rows = min(8, self._max_rows)
        one = {name: array[:1] for name, array in sample.items()}
        alone = _fastest(lambda: self._inner.predict(one, output_names))
        if alone < MIN_SAVING_S:
            saving = alone * (1 - 1 / rows)  # the most a batch could save: all but its one call
        else:
            many = {name: np.repeat(array[:1], rows, axis=0) for name, array in sample.items()}
            saving = alone - _fastest(lambda: self._inner.predict(many, output_names)) / rows
        self.enabled = saving >= MIN_SAVING_S
        return saving

    def predict(self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]:
        if not self.enabled:
            return self._inner.predict(inputs, output_names)
        call = _Call(inputs, output_names)
        with self._lock:
            self._queue.append(call)
            self._arrived.notify_all()
            lead = self._leaders < self._slots
            if lead:
                self._leaders += 1
        if not lead:
            call.wake.wait()  # answered by a leader, or handed a leader slot
            lead = call.promoted
            if lead:
                call.wake.clear()  # from now on it means answered (done is set before it, and checked first)
        if lead:
            self._lead_until(call)
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    def _lead_until(self, own: _Call) -> None:
        while True:
            batch = self._take()
            if batch:
                self._run(batch)
            elif not own.done:
                own.wake.wait()  # its call is in a batch another leader is running
            with self._lock:
                if not own.done:
                    continue
                successor = next((call for call in self._queue if not call.promoted), None)
                if successor is None:
                    self._leaders -= 1
                else:  # hand the slot on
                    successor.promoted = True
                    successor.wake.set()
                return

    def _take(self) -> list[_Call]:
        """The next batch: the oldest call and every queued call that fits with it."""
        with self._lock:
            if not self._queue:
                return []
            head = self._queue.popleft()
            batch = [head, *self._gather(head.key, head.rows)]
            rows = sum(call.rows for call in batch)
            deadline = time.monotonic() + self._max_wait_s
            # Wait only for a batch that already has company: a request alone is never delayed.
            while len(batch) > 1 and rows < self._max_rows and (remaining := deadline - time.monotonic()) > 0:
                self._arrived.wait(remaining)
                more = self._gather(head.key, rows)
                batch += more
                rows += sum(call.rows for call in more)
            return batch

    def _gather(self, key: tuple, rows: int) -> list[_Call]:
        """Pop the queued calls with ``key`` that fit beside ``rows`` already taken; lock held."""
        taken: list[_Call] = []
        kept: deque[_Call] = deque()
        while self._queue:
            call = self._queue.popleft()
            if call.key == key and rows + call.rows <= self._max_rows:
                taken.append(call)
                rows += call.rows
            else:
                kept.append(call)
        self._queue = kept
        return taken

    def _run(self, batch: list[_Call]) -> None:
        from modelfn.observability.metrics import BATCH_BUCKETS, RECORDER

        self.calls += len(batch)
        self.batches += 1
        RECORDER.observe("batch_size", (self._model,), sum(call.rows for call in batch), BATCH_BUCKETS)
        if len(batch) == 1:
            self._run_alone(batch[0])
            return
        names = batch[0].outputs
        try:
            joined = {name: np.concatenate([call.inputs[name] for call in batch]) for name in batch[0].inputs}
            results = self._inner.predict(joined, names)
            total = sum(call.rows for call in batch)
            if any(results[name].shape[:1] != (total,) for name in names):
                raise ValueError("the model's outputs do not keep the batch's rows")
        except BaseException:  # one call may be at fault: run each alone so only it fails
            for call in batch:
                self._run_alone(call)
            return
        offset = 0
        for call in batch:
            call.finish({name: results[name][offset : offset + call.rows] for name in names})
            offset += call.rows

    def _run_alone(self, call: _Call) -> None:
        try:
            call.finish(self._inner.predict(call.inputs, call.outputs))
        except BaseException as exc:  # delivered to the caller's thread, which raises it
            call.finish(error=exc)

    def __getattr__(self, name: str) -> Any:
        """Conversion tooling reaches through to the wrapped predictor (``traceable``, ``estimator``)."""
        return getattr(self._inner, name)


def _fastest(run: Any) -> float:
    """The fastest of up to 5 timed runs, within the calibration budget (at least one run)."""
    times: list[float] = []
    while len(times) < 5 and sum(times) < _CALIBRATION_BUDGET_S:
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)
