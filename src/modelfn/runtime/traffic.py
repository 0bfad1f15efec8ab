"""An alias's traffic policy at work inside a function: split, sticky key, shadow, automatic rollback.

:class:`TrafficState` holds one target per version of the split (and the shadow's), built when the
alias is resolved or refreshed; :meth:`TrafficState.choose` picks the version of each request:

- a request pinned to a version (a shadow copy, or ``/versions/N`` in the URL) gets it;
- otherwise the request's draw in [0, 1) falls into one version's share of the weights. The draw
  is random, or, with a sticky key, a hash of the alias and the key's value: the same caller gets
  the same version on every instance, and raising a canary's weight only moves callers to it.

The :class:`CanaryWatch` keeps the last ``rollback.window_s`` seconds of each version's outcomes.
When a canary's 5xx rate passes the stable version's by ``max_error_rate_increase``, or its p99
latency passes ``max_p99_ratio`` times the stable one's (and 50 ms more), both over at least
``min_requests``, the canary leaves this instance's split: its share goes to the stable version,
the event is logged and counted, and it stays out until the alias's policy changes.
:func:`verdict` is that rule; ``modelfn compare --rollback`` applies it to a fleet's metrics.

Callers must not be able to condemn a canary, so only what says something of the version counts:

- only requests the split itself sent: not those pinned by URL (``/versions/N``), nor shadow copies;
- only outcomes that are the version's fault (:func:`version_fault`): answered, 500 or 504. A 4xx
  is the caller's, a 503 the instance's (overload, a load in progress);
- latency is compared per request size class (:data:`SIZE_CLASSES`, 16x apart): a few huge
  requests are judged against the stable version's huge requests, not against its small ones.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

from modelfn.observability.metrics import SIZE_CLASSES, size_class, version_fault

if TYPE_CHECKING:
    from modelfn.observability.metrics import RequestContext
    from modelfn.registry import Rollback, Traffic

log = logging.getLogger("modelfn")
T = TypeVar("T")
#: A canary's p99 must also exceed the stable one's by this much: sub-millisecond noise is no reason.
P99_MARGIN_S = 0.05
#: Judge a canary every this many of its outcomes (sorting a window on every request would cost).
CHECK_EVERY = 10


class Outcomes(NamedTuple):
    """A version's judged requests of one size class over a window: how many, the share that were
    the version's fault (500, 504), and the p99 latency."""

    requests: int
    error_rate: float
    p99_s: float


def verdict(rule: Rollback, canary: Mapping[str, Outcomes], stable: Mapping[str, Outcomes], stable_version: str) -> str:
    """Why a canary must leave the split, or empty when it may stay (or too few requests tell).

    ``canary`` and ``stable`` map size classes to outcomes. Fault rates are compared over all
    sizes, p99 latencies within each size class where both versions have ``min_requests``. The one
    rule, for an instance's own window (:class:`CanaryWatch`) and a fleet's metrics (``modelfn compare``).
    """
    mine, theirs = _overall(canary), _overall(stable)
    if mine.requests < rule.min_requests or theirs.requests < rule.min_requests:
        return ""
    if mine.error_rate - theirs.error_rate > rule.max_error_rate_increase:
        return f"5xx rate {mine.error_rate:.1%} against {theirs.error_rate:.1%} for v{stable_version}"
    for size in SIZE_CLASSES:
        one, other = canary.get(size), stable.get(size)
        if one is None or other is None or min(one.requests, other.requests) < rule.min_requests:
            continue
        if one.p99_s > other.p99_s * rule.max_p99_ratio and one.p99_s - other.p99_s > P99_MARGIN_S:
            return (f"p99 {one.p99_s * 1000:.0f} ms against {other.p99_s * 1000:.0f} ms for v{stable_version} "
                    f"on requests {size}")  # fmt: skip
    return ""


def _overall(by_size: Mapping[str, Outcomes]) -> Outcomes:
    requests = sum(o.requests for o in by_size.values())
    faults = sum(o.error_rate * o.requests for o in by_size.values())
    return Outcomes(requests, faults / requests if requests else 0.0, 0.0)


def sticky_draw(alias: str, value: str) -> float:
    """A stable point in [0, 1) for a sticky key's value (the same on every instance and process)."""
    digest = hashlib.sha256(f"{alias}\0{value}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class TrafficState(Generic[T]):
    """The targets of one alias's policy and how a request picks one."""

    def __init__(
        self,
        label: str,
        policy: Traffic,
        targets: Mapping[str, T],
        *,
        on_rollback: Callable[[str, str], None] | None = None,
    ) -> None:
        self.label = label  # name@alias, for logs and the sticky hash
        self.policy = policy
        self.targets = dict(targets)
        self.stable = policy.stable
        self.disabled: set[str] = set()
        self._lock = threading.Lock()
        self.watch = CanaryWatch(self, policy.rollback, on_rollback) if policy.rollback is not None else None

    def choose(self, context: RequestContext | None, key: Callable[[], str]) -> tuple[str, T]:
        """``(version, target)`` for this request; ``key()`` reads the sticky key's value when there is one."""
        if context is not None and context.pinned in self.targets:
            return context.pinned, self.targets[context.pinned]
        draw = context.draw if context is not None else 0.0
        if self.policy.sticky_header or self.policy.sticky_field:
            value = key()
            if value:
                draw = sticky_draw(self.label, value)
        weights = [(v, w) for v, w in self.policy.split.items() if w > 0 and v not in self.disabled]
        total = sum(w for _, w in weights)
        point = draw * total
        for version, weight in weights:
            if point < weight:
                return version, self.targets[version]
            point -= weight
        return self.stable, self.targets[self.stable]

    def disable(self, version: str) -> bool:
        """Take ``version`` out of the split on this instance; False when it already was (or is stable)."""
        with self._lock:
            if version == self.stable or version in self.disabled:
                return False
            self.disabled.add(version)
            return True


class CanaryWatch:
    """Each version's recent outcomes, and the rollback rule (see the module docstring)."""

    def __init__(self, state: TrafficState[Any], rule: Rollback, on_rollback: Callable[[str, str], None] | None):
        self.state = state
        self.rule = rule
        self.on_rollback = on_rollback
        self._outcomes: dict[str, deque[tuple[float, bool, float, str]]] = {}
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def observe(self, version: str, status: int, seconds: float, size: int) -> None:
        """One answer to a request the split sent to ``version`` (``size``: its body's bytes)."""
        fault = version_fault(status)
        if version not in self.state.policy.split or fault is None:
            return  # a shadow's copies are compared, not judged; the caller's errors say nothing
        now = time.monotonic()
        with self._lock:
            window = self._outcomes.setdefault(version, deque())
            window.append((now, fault, seconds, size_class(size)))
            self._trim(window, now)
            self._seen[version] = self._seen.get(version, 0) + 1
            due = version != self.state.stable and self._seen[version] % CHECK_EVERY == 0
        if due:
            self.judge(version)

    def judge(self, canary: str) -> str:
        """Why ``canary`` must leave the split (and take it out), or empty when it may stay."""
        now = time.monotonic()
        with self._lock:
            mine = _outcomes(self._trim(self._outcomes.get(canary, deque()), now))
            stable = _outcomes(self._trim(self._outcomes.get(self.state.stable, deque()), now))
        reason = verdict(self.rule, mine, stable, self.state.stable)
        if reason and self.state.disable(canary):
            log.warning("rolled back canary %s v%s: %s over the last %g s; its share goes to v%s",
                        self.state.label, canary, reason, self.rule.window_s, self.state.stable)  # fmt: skip
            if self.on_rollback is not None:
                self.on_rollback(canary, reason)
        return reason

    def _trim(self, window: deque[tuple[float, bool, float, str]], now: float) -> deque[tuple[float, bool, float, str]]:
        while window and window[0][0] < now - self.rule.window_s:
            window.popleft()
        return window


def _outcomes(window: deque[tuple[float, bool, float, str]]) -> dict[str, Outcomes]:
    """Per size class: requests, fault rate and p99 latency of a window."""
    classes: dict[str, list[tuple[bool, float]]] = {}
    for _, fault, seconds, size in window:
        classes.setdefault(size, []).append((fault, seconds))
    found = {}
    for size, entries in classes.items():
        latencies = sorted(seconds for _, seconds in entries)
        faults = sum(fault for fault, _ in entries)
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        found[size] = Outcomes(len(entries), faults / len(entries), p99)
    return found
