"""``modelfn compare``'s arithmetic: metrics texts in, per-version figures out, over a window, judged."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from modelfn.observability.metrics import Recorder
from modelfn.protocols.metrics import RecorderCollector
from modelfn.registry import Rollback
from modelfn.tooling.compare import judge, reports, window_reports

ROLES = {"1": "stable", "2": "canary"}


def exposition(recorder: Recorder) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RecorderCollector(recorder))
    return generate_latest(registry).decode()


def serve(recorder: Recorder, version: str, count: int, *, status: int = 200, seconds: float = 0.002,
          size: int = 200, pinned: bool = False) -> None:  # fmt: skip
    """Requests as the function records them: every one, and those a split chose once more for the rule."""
    for _ in range(count):
        recorder.request("digits", version, "/predict", status, seconds)
        if not pinned:
            recorder.split_request("digits", version, status, seconds, size)


def test_a_window_counts_only_what_happened_between_the_scrapes() -> None:
    instance = Recorder()
    serve(instance, "1", 50)
    serve(instance, "2", 50, status=500)  # old failures, before the window
    before = exposition(instance)
    serve(instance, "1", 30)
    serve(instance, "2", 30)
    after = exposition(instance)
    found = {r.version: r for r in window_reports([before], [after], "digits", ROLES)}
    assert (found["1"].requests, found["2"].requests, found["2"].errors) == (30, 30, 0)
    assert found["2"].latency.count == 30 and found["2"].latency.quantile(0.99) == 0.0025
    assert judge(list(found.values()), Rollback(min_requests=20), "1") == {}
    whole = {r.version: r for r in reports([after], "digits", ROLES)}
    assert (whole["2"].requests, whole["2"].errors) == (80, 50)


def test_instances_add_up_and_a_restarted_one_counts_from_zero() -> None:
    steady, restarted = Recorder(), Recorder()
    serve(steady, "1", 10)
    serve(restarted, "1", 100)
    before = [exposition(steady), exposition(restarted)]
    serve(steady, "1", 15)
    serve(steady, "2", 12, status=500)
    fresh = Recorder()  # the second instance was replaced: its counters start again
    serve(fresh, "1", 20)
    serve(fresh, "2", 13, status=504)
    after = [exposition(steady), exposition(fresh)]
    found = {r.version: r for r in window_reports(before, after, "digits", ROLES)}
    assert (found["1"].requests, found["1"].errors) == (35, 0)
    assert (found["2"].requests, found["2"].errors) == (25, 25)
    assert judge(list(found.values()), Rollback(min_requests=20), "1") == {"2": "5xx rate 100.0% against 0.0% for v1"}


def test_the_rule_waits_for_enough_requests_and_judges_latency() -> None:
    instance = Recorder()
    serve(instance, "1", 40, seconds=0.004)
    serve(instance, "2", 19, seconds=2.0)
    found = reports([exposition(instance)], "digits", ROLES)
    assert judge(found, Rollback(min_requests=20), "1") == {}  # 19 canary requests tell nothing yet
    serve(instance, "2", 1, seconds=2.0)
    found = reports([exposition(instance)], "digits", ROLES)
    assert judge(found, Rollback(min_requests=20), "1") == {"2": "p99 2500 ms against 5 ms for v1 on requests <1KiB"}
    assert judge(found, Rollback(min_requests=20, max_p99_ratio=1000), "1") == {}


def test_the_fleet_rule_ignores_pinned_requests_the_callers_errors_and_lone_huge_requests() -> None:
    instance = Recorder()
    serve(instance, "1", 100)
    serve(instance, "2", 30)
    serve(instance, "2", 30, seconds=3.0, pinned=True)  # /versions/2 in the URL
    serve(instance, "2", 30, status=400)  # the caller's fault
    serve(instance, "2", 30, status=503)  # the instance's
    serve(instance, "2", 30, seconds=3.0, size=8 << 20)  # huge: the stable version had none that size
    found = reports([exposition(instance)], "digits", ROLES)
    assert judge(found, Rollback(min_requests=20), "1") == {}
    assert {r.version: r.requests for r in found}["2"] == 150  # the table still shows everything
    serve(instance, "2", 30, seconds=0.3)
    found = reports([exposition(instance)], "digits", ROLES)
    assert judge(found, Rollback(min_requests=20), "1") == {"2": "p99 500 ms against 2 ms for v1 on requests <1KiB"}
