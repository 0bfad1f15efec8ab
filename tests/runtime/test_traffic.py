"""The traffic policy's pieces: the rollback rule, the sticky draw, and the choice of a version."""

from __future__ import annotations

from collections import Counter

import pytest

from modelfn.observability.metrics import RequestContext, version_fault
from modelfn.registry import Rollback, Traffic
from modelfn.runtime.traffic import Outcomes, TrafficState, sticky_draw, verdict

RULE = Rollback(min_requests=20, max_error_rate_increase=0.05, max_p99_ratio=2.0)
HEALTHY = Outcomes(100, 0.01, 0.020)


@pytest.mark.parametrize(
    ("canary", "reason"),
    [
        (Outcomes(100, 0.06, 0.020), ""),  # 5 points over: at the margin, stays
        (Outcomes(100, 0.07, 0.020), "5xx rate 7.0% against 1.0% for v1"),
        (Outcomes(19, 1.0, 9.0), ""),  # too few requests to tell
        (Outcomes(100, 0.0, 0.060), ""),  # 3x the p99 but only 40 ms more: noise at this scale
        (Outcomes(100, 0.0, 0.080), "p99 80 ms against 20 ms for v1"),
    ],
)
def test_the_rollback_rule(canary: Outcomes, reason: str) -> None:
    small = "<1KiB"
    assert verdict(RULE, {small: canary}, {small: HEALTHY}, "1") == (
        reason + " on requests <1KiB" if "p99" in reason else reason
    )
    assert verdict(RULE, {small: canary}, {small: Outcomes(19, 0.0, 0.001)}, "1") == ""  # nor with a quiet stable


def test_latency_is_compared_within_a_size_class_and_faults_over_all_sizes() -> None:
    stable = {"<1KiB": Outcomes(200, 0.0, 0.002), "<4MiB": Outcomes(20, 0.0, 0.400)}
    # Slow only on its huge requests, as slow as the stable version's huge ones: healthy.
    assert verdict(RULE, {"<1KiB": Outcomes(50, 0.0, 0.002), "<4MiB": Outcomes(20, 0.0, 0.450)}, stable, "1") == ""
    # Huge requests the stable version has too few of tell nothing.
    assert verdict(RULE, {"<1KiB": Outcomes(50, 0.0, 0.002), ">=4MiB": Outcomes(40, 0.0, 9.0)}, stable, "1") == ""
    # Slow on small requests: condemned.
    slow = verdict(RULE, {"<1KiB": Outcomes(50, 0.0, 0.300)}, stable, "1")
    assert slow == "p99 300 ms against 2 ms for v1 on requests <1KiB"
    # Faults are counted whatever the size: 10 of 40 in two classes of 20 each.
    faults = {"<1KiB": Outcomes(20, 0.0, 0.002), "<16KiB": Outcomes(20, 0.5, 0.002)}
    assert verdict(RULE, faults, stable, "1") == "5xx rate 25.0% against 0.0% for v1"


@pytest.mark.parametrize(
    ("status", "fault"),
    [
        (200, False),
        (204, False),
        (400, None),
        (401, None),
        (413, None),
        (429, None),
        (500, True),
        (503, None),
        (504, True),
    ],
)
def test_only_the_versions_own_faults_count(status: int, fault: bool | None) -> None:
    assert version_fault(status) is fault


def test_the_watch_ignores_what_says_nothing_of_the_version() -> None:
    state = TrafficState("digits@prod", Traffic(split={"1": 50, "2": 50}, rollback=RULE), {"1": 1, "2": 2})
    for _ in range(40):
        state.watch.observe("1", 200, 0.002, 100)
        state.watch.observe("2", 400, 5.0, 100)  # the caller's errors, however slow
        state.watch.observe("2", 503, 5.0, 100)  # overload
        state.watch.observe("2", 200, 3.0, 8 << 20)  # huge: the stable version had none
    assert state.watch.judge("2") == "" and "2" not in state.disabled
    for _ in range(20):
        state.watch.observe("2", 500, 0.002, 100)
    assert state.watch.judge("2").startswith("5xx rate 33.3%") and "2" in state.disabled


def test_a_sticky_draw_is_stable_per_alias_and_spread() -> None:
    assert sticky_draw("digits@prod", "user-7") == sticky_draw("digits@prod", "user-7")
    assert sticky_draw("digits@prod", "user-7") != sticky_draw("digits@beta", "user-7")
    draws = [sticky_draw("digits@prod", f"user-{n}") for n in range(4000)]
    assert all(0 <= d < 1 for d in draws)
    assert abs(sum(d < 0.1 for d in draws) - 400) < 4.5 * (4000 * 0.1 * 0.9) ** 0.5


def request_context(draw: float, pinned: str = "") -> RequestContext:
    context = RequestContext(draw, None)
    context.pinned = pinned
    return context


def test_draws_fall_into_the_weights_and_a_disabled_canary_gets_none() -> None:
    state = TrafficState("digits@prod", Traffic(split={"1": 90, "2": 10}), {"1": "one", "2": "two"})
    picks = Counter(state.choose(request_context(n / 1000), str)[0] for n in range(1000))
    assert picks == {"1": 900, "2": 100}
    assert state.choose(request_context(0.99, pinned="2"), str) == ("2", "two")  # /versions/2 in the URL
    assert state.disable("2") and not state.disable("2") and not state.disable("1")  # the stable one stays
    assert {state.choose(request_context(n / 100), str)[0] for n in range(100)} == {"1"}


def test_a_sticky_key_decides_instead_of_the_draw() -> None:
    policy = Traffic(split={"1": 50, "2": 50}, sticky_header="X-User")
    state = TrafficState("digits@prod", policy, {"1": 1, "2": 2})
    for user in ("ada", "grace", "alan"):
        versions = {state.choose(request_context(n / 10), lambda user=user: user)[0] for n in range(10)}
        assert len(versions) == 1  # whatever the random draw, one caller gets one version
    assert {state.choose(request_context(n / 10), str)[0] for n in range(10)} == {"1", "2"}  # no key: the draw
