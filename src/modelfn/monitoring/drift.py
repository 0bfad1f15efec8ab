"""An instance's drift watch: its model's inputs and outputs counted on the reference's bins, flushed to a store.

Made when the model loads, where ``MODELFN_MONITOR_STORE`` is set and the contract names
``monitoring.reference``. A model call only hands its tensors to the watch; the watch's thread counts
them every :data:`DRAIN_S` seconds, many calls at once, on the reference's bins (no I/O on a request's
time). Every ``MODELFN_MONITOR_FLUSH_S`` seconds, and at exit, the
counts since the last flush are written as one JSON summary and start again from zero::

    <store>/<model>/<version>/<YYYY-MM-DD>/<HHMMSS>-<instance>-<sequence>.json

with the reference beside them (``<store>/<model>/<version>/reference.json``, written once), so
that ``modelfn monitor report`` can add up every instance's windows over any period. At each
flush the window is also scored against the reference (when it holds :data:`~modelfn.monitoring.stats.MIN_ROWS`
rows), and the scores become the gauges ``modelfn_drift_score{model,feature}``. On Lambda, which
freezes a process between invocations, nothing runs in the background: the adapter flushes a due watch.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfn.monitoring.features import feature_hook, features
from modelfn.monitoring.summary import Counts, Reference
from modelfn.observability.metrics import RECORDER

if TYPE_CHECKING:
    import numpy as np

    from modelfn.contract import Contract
    from modelfn.monitoring.features import Features
    from modelfn.settings import Settings

log = logging.getLogger("modelfn")
#: Reference files are small (bins and counts); a larger one is refused before it is parsed.
MAX_REFERENCE_BYTES = 4 << 20
#: The reference's copy in the store, beside its version's summaries.
REFERENCE_NAME = "reference.json"
#: Whether new watches start a flushing thread (Lambda's adapter turns it off: a frozen process runs none).
BACKGROUND = [True]
#: How often the watch's thread counts the calls kept since (seconds), and how many it keeps at most.
DRAIN_S = 0.05
MAX_PENDING_CALLS = 10_000
#: Every watch of the process, for :func:`flush_due`.
WATCHES: list[DriftWatch] = []


class DriftWatch:
    """One model version's running summary in this instance, and the thread that flushes it."""

    def __init__(
        self, contract: Contract, reference: Reference, settings: Settings, hook: Callable[..., Any] | None = None
    ) -> None:
        from modelfn.runtime.stores import open_store

        self.contract = contract
        self.hook = hook
        # Summaries are filed under the contract's name and version; the stored reference says the same.
        reference.data.update(model=contract.name, version=contract.version)
        self.reference = reference
        self.counts = Counts(reference)
        self.store, self.prefix = open_store(settings.monitor_store)
        self.uri = settings.monitor_store
        self.flush_s = settings.monitor_flush_s
        self.attempts = settings.store_attempts
        self.instance = uuid.uuid4().hex[:12]
        self.window_start = time.time()
        self._next = time.monotonic() + self.flush_s
        self._sequence = itertools.count()
        self._writing = threading.Lock()
        self._failures = 0
        self._reference_stored = False
        self._pending: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        if BACKGROUND[0]:
            threading.Thread(target=self._run, name=f"modelfn-drift-{contract.name}", daemon=True).start()
        atexit.register(self.close)
        WATCHES.append(self)

    def observe(self, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        """Keep one model call's tensors for the next count; never raises, never waits (on the request thread).

        Counting runs on the watch's thread every :data:`DRAIN_S`, many calls at once: a call's own share
        of the work is then a list append, and the bins are updated once for hundreds of rows.
        """
        with self._pending_lock:
            if len(self._pending) >= MAX_PENDING_CALLS:  # the counting thread is starved: drop, and say so
                RECORDER.count("drift_calls_dropped", (self.contract.name,))
                return
            self._pending.append((inputs, outputs))

    def drain(self) -> None:
        """Count the calls kept since the last drain."""
        with self._pending_lock:
            taken, self._pending = self._pending, []
        if not taken:
            return
        try:
            for rows in self._features(taken):
                self.counts.add(rows)
        except Exception:
            self._failures += 1
            if self._failures == 1:  # once: a feature that cannot be counted fails the same way every call
                log.exception("drift watch of %s could not count its calls' features", self.contract.name)

    def _features(self, taken: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]) -> list[Features]:
        """The features of many calls: computed once on their tensors joined row-wise, or else call by call."""
        import numpy as np

        first_in, first_out = taken[0]
        if len(taken) > 1 and all(a.keys() == first_in.keys() and b.keys() == first_out.keys() for a, b in taken):
            try:
                inputs = {name: np.concatenate([a[name] for a, _ in taken]) for name in first_in}
                outputs = {name: np.concatenate([b[name] for _, b in taken]) for name in first_out}
                return [features(self.contract, inputs, outputs, self.hook)]
            except ValueError:  # rows of different widths: one call at a time
                pass
        return [features(self.contract, a, b, self.hook) for a, b in taken]

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def flush(self) -> None:
        """Write the window since the last flush (if it holds any row), score it, and start a new one."""
        from modelfn.monitoring.stats import MIN_ROWS, score
        from modelfn.runtime.stores import ABSENT, join, with_retries

        with self._writing:
            self._next = time.monotonic() + self.flush_s
            self.drain()
            start, end = self.window_start, time.time()
            summary = self.counts.take()
            self.window_start = end
            if not summary["rows"]:
                return
            contract = self.contract
            summary.update(model=contract.name, version=contract.version, instance=self.instance,
                           start=start, end=end)  # fmt: skip
            stamp = time.gmtime(end)
            key = join(self.prefix, contract.name, contract.version, time.strftime("%Y-%m-%d", stamp),
                       f"{time.strftime('%H%M%S', stamp)}-{self.instance}-{next(self._sequence):06d}.json")  # fmt: skip
            data = json.dumps(summary, separators=(",", ":")).encode()
            try:
                if not self._reference_stored:  # beside the summaries, so that a report needs the store alone
                    self._store_reference(join(self.prefix, contract.name, contract.version, REFERENCE_NAME))
                with_retries(lambda: self.store.write(key, data, expect=ABSENT), what=f"writing {self.uri}/{key}",
                             attempts=self.attempts)  # fmt: skip
                RECORDER.count("drift_summaries", (contract.name, "written"))
            except Exception as exc:
                log.warning("drift summary of %s (%d rows) lost: %s", contract.name, summary["rows"],
                            getattr(exc, "message", None) or type(exc).__name__)  # fmt: skip
                RECORDER.count("drift_summaries", (contract.name, "failed"))
            if summary["rows"] >= MIN_ROWS:
                for each in score(self.reference, summary):
                    RECORDER.gauge("drift_score", (contract.name, each.name), each.score)

    def _store_reference(self, key: str) -> None:
        from modelfn.runtime.stores import ABSENT

        if self.store.stat(key) is None:
            try:
                self.store.write(key, json.dumps(self.reference.data).encode(), expect=ABSENT)
            except Exception:
                if self.store.stat(key) is None:  # another instance's write wins a race; anything else is a failure
                    raise
        self._reference_stored = True

    def close(self) -> None:
        self._stop.set()
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(DRAIN_S):
            try:
                if self.due():
                    self.flush()
                else:
                    self.drain()
            except Exception:
                log.exception("drift watch of %s could not count or flush", self.contract.name)


def read_reference(path: Path) -> Reference:
    """The reference file of a contract, checked for size before it is parsed."""
    from modelfn.errors import ContractError

    try:
        size = path.stat().st_size
        if size > MAX_REFERENCE_BYTES:
            raise ContractError(
                f"{path.name} is {size:,} bytes; a monitoring reference is at most {MAX_REFERENCE_BYTES:,}"
            )
        return Reference(json.loads(path.read_bytes()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ContractError(f"monitoring.reference {path.name}: {exc}; `modelfn monitor reference` writes it") from None


def drift_watch(contract: Contract, folder: Path, settings: Settings) -> DriftWatch:
    """The drift watch of a model being loaded from ``folder`` (its reference and features hook read now)."""
    reference = read_reference(folder / str(contract.monitoring.reference))
    return DriftWatch(contract, reference, settings, feature_hook(folder, contract))


def flush_due() -> None:
    """Count what each watch kept, and flush the due ones, on this thread (Lambda, before an invocation returns)."""
    for watch in list(WATCHES):
        if watch.due():
            watch.flush()
        else:
            watch.drain()
