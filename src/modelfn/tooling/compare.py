"""``modelfn compare``: the versions of an alias side by side, from the functions' own ``/metrics``.

Each ``--metrics`` URL is scraped and parsed with prometheus-client's text parser; the request
counters and latency histograms of every route are added up per version, across instances. The
latency percentiles are histogram upper bounds (the bucket that holds the percentile), as
Prometheus's ``histogram_quantile`` would place them without interpolation; agreement is the
share of shadow copies whose answer matched the served one.

With a window (:func:`window_reports`), each instance is scraped twice and only what happened in
between counts; an instance that restarted in between (its counters went down) counts from zero.
:func:`judge` applies the automatic-rollback rule for a whole fleet at once, to the figures the
instances keep for exactly that (``modelfn_split_*``): only requests a split sent, only outcomes
that are the version's fault, latency per request size class (see :mod:`modelfn.runtime.traffic`).
"""

from __future__ import annotations

import urllib.request
from collections import defaultdict
from typing import TYPE_CHECKING, NamedTuple

from modelfn.observability.metrics import LATENCY_BUCKETS, Histogram
from modelfn.runtime.traffic import Outcomes, verdict

if TYPE_CHECKING:
    from modelfn.registry import Rollback


class SplitFigures(NamedTuple):
    """What a split sent to a version in one size class: judged requests, faults, latency."""

    requests: int
    faults: int
    latency: Histogram


class VersionReport(NamedTuple):
    version: str
    role: str
    requests: int
    errors: int
    latency: Histogram
    agreed: int
    compared: int
    #: Size class -> what the rollback rule judges.
    split: dict[str, SplitFigures]

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def scrape(url: str, api_key: str = "") -> str:
    request = urllib.request.Request(url, headers={"x-api-key": api_key} if api_key else {})
    with urllib.request.urlopen(request, timeout=10) as response:  # an operator's own URL
        return response.read().decode()


def reports(texts: list[str], model: str, roles: dict[str, str]) -> list[VersionReport]:
    """Per version of ``model``: requests, 5xx, latency and shadow agreement, summed over the scrapes."""
    from prometheus_client.parser import text_string_to_metric_families

    requests: dict[str, int] = defaultdict(int)
    errors: dict[str, int] = defaultdict(int)
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    sums: dict[str, float] = defaultdict(float)
    agreed: dict[str, int] = defaultdict(int)
    compared: dict[str, int] = defaultdict(int)
    split_counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    split_buckets: dict[tuple[str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    split_sums: dict[tuple[str, str], float] = defaultdict(float)
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if labels.get("model") != model:
                    continue
                version = labels.get("version", "")
                if sample.name == "modelfn_requests_total":
                    requests[version] += int(sample.value)
                    if labels.get("code", "").startswith("5"):
                        errors[version] += int(sample.value)
                elif sample.name == "modelfn_request_duration_seconds_bucket":
                    buckets[version][float(labels["le"])] += sample.value
                elif sample.name == "modelfn_request_duration_seconds_sum":
                    sums[version] += sample.value
                elif sample.name == "modelfn_split_outcomes_total":
                    split_counts[(version, labels["size"])][labels["outcome"] == "fault"] += int(sample.value)
                elif sample.name == "modelfn_split_duration_seconds_bucket":
                    split_buckets[(version, labels["size"])][float(labels["le"])] += sample.value
                elif sample.name == "modelfn_split_duration_seconds_sum":
                    split_sums[(version, labels["size"])] += sample.value
                elif sample.name == "modelfn_shadow_requests_total" and labels.get("agreed") in ("true", "false"):
                    compared[version] += int(sample.value)
                    agreed[version] += int(sample.value) if labels["agreed"] == "true" else 0
    found = []
    for version in sorted(set(requests) | set(roles), key=lambda v: (v not in roles, v)):
        split = {
            size: SplitFigures(sum(counts), counts[1], _histogram(split_buckets[(v, size)], split_sums[(v, size)]))
            for (v, size), counts in split_counts.items()
            if v == version
        }
        found.append(VersionReport(version, roles.get(version, "other"), requests[version], errors[version],
                                   _histogram(buckets[version], sums[version]), agreed[version], compared[version],
                                   split))  # fmt: skip
    return found


def _histogram(cumulative_buckets: dict[float, float], total: float) -> Histogram:
    """A histogram from Prometheus's cumulative ``le`` buckets."""
    histogram = Histogram(LATENCY_BUCKETS)
    previous = 0.0
    counts = []
    for _, running in sorted(cumulative_buckets.items()):
        counts.append(int(running - previous))
        previous = running
    if len(counts) == len(histogram.counts):
        histogram.counts, histogram.count, histogram.total = counts, int(previous), total
    return histogram


def window_reports(before: list[str], after: list[str], model: str, roles: dict[str, str]) -> list[VersionReport]:
    """What each instance (``before[i]`` and ``after[i]`` are its two scrapes) served in between, summed."""
    totals: dict[str, VersionReport] = {}
    for first, second in zip(before, after, strict=True):
        earlier = {r.version: r for r in reports([first], model, roles)}
        for report in reports([second], model, roles):
            previous = earlier.get(report.version)
            if previous is not None and report.requests >= previous.requests:
                report = _minus(report, previous)  # else it restarted: all of it is new
            totals[report.version] = _plus(totals[report.version], report) if report.version in totals else report
    return sorted(totals.values(), key=lambda r: (r.version not in roles, r.version))


def judge(found: list[VersionReport], rule: Rollback, stable: str) -> dict[str, str]:
    """Each canary that the rollback rule takes out, and why."""
    by_version = {r.version: r for r in found}
    if stable not in by_version:
        return {}

    def outcomes(report: VersionReport) -> dict[str, Outcomes]:
        return {
            size: Outcomes(f.requests, f.faults / f.requests, f.latency.quantile(0.99))
            for size, f in report.split.items()
            if f.requests
        }

    baseline = outcomes(by_version[stable])
    judged = {}
    for report in found:
        if report.role == "canary":
            reason = verdict(rule, outcomes(report), baseline, stable)
            if reason:
                judged[report.version] = reason
    return judged


def _minus(later: VersionReport, earlier: VersionReport) -> VersionReport:
    return _combine(later, earlier, -1)


def _plus(one: VersionReport, other: VersionReport) -> VersionReport:
    return _combine(one, other, 1)


def _combine(one: VersionReport, other: VersionReport, sign: int) -> VersionReport:
    empty = SplitFigures(0, 0, Histogram(LATENCY_BUCKETS))
    split = {}
    for size in {*one.split, *other.split}:
        a, b = one.split.get(size, empty), other.split.get(size, empty)
        split[size] = SplitFigures(a.requests + sign * b.requests, a.faults + sign * b.faults,
                                   _combine_histograms(a.latency, b.latency, sign))  # fmt: skip
    return one._replace(
        requests=one.requests + sign * other.requests,
        errors=one.errors + sign * other.errors,
        latency=_combine_histograms(one.latency, other.latency, sign),
        split=split,
        agreed=one.agreed + sign * other.agreed,
        compared=one.compared + sign * other.compared,
    )


def _combine_histograms(one: Histogram, other: Histogram, sign: int) -> Histogram:
    latency = Histogram(LATENCY_BUCKETS)
    latency.counts = [a + sign * b for a, b in zip(one.counts, other.counts, strict=True)]
    latency.count = one.count + sign * other.count
    latency.total = one.total + sign * other.total
    return latency


def table(found: list[VersionReport]) -> str:
    rows = ["version  role      requests  errors   p50 ms   p90 ms   p99 ms  agreement"]
    for report in found:
        p = [report.latency.quantile(q) * 1000 for q in (0.5, 0.9, 0.99)]
        agreement = f"{report.agreed / report.compared:.1%} of {report.compared}" if report.compared else "-"
        rows.append(f"{report.version:<8} {report.role:<9} {report.requests:>8}  {report.error_rate:>6.1%}  "
                    + "  ".join(f"{'<=' + format(v, 'g'):>7}" for v in p) + f"  {agreement}")  # fmt: skip
    return "\n".join(rows)
