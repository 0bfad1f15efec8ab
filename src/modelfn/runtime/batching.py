"""Micro-batching: concurrent calls for one model run as one inference, each caller gets its own rows.

No thread of its own, so a request alone pays nothing: the first caller to find
the model idle becomes the *leader* and runs the queue in batches, on its own
thread, until its own call is answered; then it hands the lead to the next
waiting caller (so no request keeps serving others forever) or, with nothing
queued, lets the model go idle. Batches form from the calls that arrive while a
batch is running; ``max_wait_ms`` lets a batch that already has company wait a
little for more, but never a request that is alone.

A batch joins calls whose tensors agree past the first dimension and that ask
for the same outputs, up to ``max_batch_size`` rows. If the batched inference
fails, each call in it is run alone, so only the call at fault gets the error.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from modelfn.contract import Batching
    from modelfn.runtime.predictors import Predictor


class _Call:
    """One caller's inputs, and where its answer (or error) is left."""

    __slots__ = ("done", "error", "inputs", "key", "outputs", "result", "rows", "wake")

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
        self.wake = threading.Event()

    def finish(self, result: dict[str, np.ndarray] | None = None, error: BaseException | None = None) -> None:
        self.result, self.error, self.done = result, error, True
        self.wake.set()


class BatchingPredictor:
    """Wraps a predictor; same interface, thread-safe. ``calls`` and ``batches`` count what it did."""

    def __init__(self, inner: Predictor, policy: Batching) -> None:
        self._inner = inner
        self._max_rows = policy.max_batch_size
        self._max_wait_s = policy.max_wait_ms / 1000
        self._queue: deque[_Call] = deque()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._leading = False
        self.calls = 0
        self.batches = 0

    def predict(self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]:
        call = _Call(inputs, output_names)
        with self._lock:
            self._queue.append(call)
            self._arrived.notify_all()
            lead = not self._leading
            self._leading = True
        if not lead:
            call.wake.wait()  # answered by a leader, or made the leader
            lead = not call.done
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
            with self._lock:
                if not own.done:
                    continue
                if self._queue:  # hand the lead on: the woken successor finds its call not done, and leads
                    self._queue[0].wake.set()
                else:
                    self._leading = False
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
        self.calls += len(batch)
        self.batches += 1
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
