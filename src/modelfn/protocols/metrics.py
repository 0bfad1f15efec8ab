"""``GET /metrics``: the function's metrics in the Prometheus text format (prometheus-client).

The recorder (:mod:`modelfn.observability.metrics`) keeps plain counters on the request path; this module, and
prometheus-client with it, is imported on the first scrape only. A custom collector turns each
recorded family into prometheus-client's metric families, and ``generate_latest`` writes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from modelfn.http import Request, Response
from modelfn.observability.metrics import RECORDER, Recorder

if TYPE_CHECKING:
    from modelfn.function import Servable

#: Recorded name -> (exposed name, kind, help, label names).
FAMILIES: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "requests": ("modelfn_requests", "counter", "Requests answered, by model, version, route and status code.",
                 ("model", "version", "route", "code")),
    "errors": ("modelfn_request_errors", "counter", "Requests answered with a 5xx status.",
               ("model", "version", "route")),
    "request_duration_seconds": ("modelfn_request_duration_seconds", "histogram",
                                 "Time to answer a request, in seconds.", ("model", "version", "route")),
    "loads": ("modelfn_model_loads", "counter", "Models loaded into memory.", ("model", "version")),
    "load_phase_seconds": ("modelfn_model_load_phase_seconds", "histogram",
                           "Each phase of a model load (fetch, deserialize, verify, hooks, warmup), in seconds.",
                           ("model", "version", "phase")),
    "cold_starts": ("modelfn_cold_starts", "counter", "Processes whose first model load this was.",
                    ("model", "version")),
    "cold_start_phase_seconds": ("modelfn_cold_start_phase_seconds", "gauge",
                                 "Each phase of this process's first model load, in seconds.",
                                 ("model", "version", "phase")),
    "cache": ("modelfn_model_cache_events", "counter",
              "Model cache lookups (hit, miss) and releases (eviction), by model.", ("model", "event")),
    "batch_size": ("modelfn_batch_size", "histogram", "Rows per micro-batched inference call.", ("model",)),
    "shadow": ("modelfn_shadow_requests", "counter",
               "Requests mirrored to a shadow version, by whether its answer agreed with the served one.",
               ("model", "version", "agreed")),
    "split_outcomes": ("modelfn_split_outcomes", "counter",
                       "Requests a traffic split sent to a version, by body size class and whether the answer "
                       "was the version's fault (500, 504) or not; 4xx and 503 are not counted.",
                       ("model", "version", "size", "outcome")),
    "split_duration_seconds": ("modelfn_split_duration_seconds", "histogram",
                               "Time to answer the requests counted in modelfn_split_outcomes, by body size class.",
                               ("model", "version", "size")),
    "rollbacks": ("modelfn_canary_rollbacks", "counter",
                  "Canary versions taken out of a traffic split by automatic rollback.", ("model", "version")),
    "generation_ttft_seconds": ("modelfn_generation_ttft_seconds", "histogram",
                                "Time from a generation's start to its first token, in seconds.", ("model",)),
    "generation_tokens": ("modelfn_generation_tokens", "counter", "Tokens generated.", ("model",)),
    "generation_tokens_per_second": ("modelfn_generation_tokens_per_second", "histogram",
                                     "Each generation's tokens per second, from its start to its end.", ("model",)),
    "generation_cancelled": ("modelfn_generation_cancelled", "counter",
                             "Generations stopped because their reader went away (a client that disconnected).",
                             ("model",)),
    "generation_deadline": ("modelfn_generation_deadline", "counter",
                            "Generations cut short by the request's deadline.", ("model",)),
    "payload_records": ("modelfn_payload_records", "counter",
                        "Payload log records: written, dropped (the queue was full) or failed (the sink refused).",
                        ("model", "outcome")),
    "drift_summaries": ("modelfn_drift_summaries", "counter",
                        "Drift summaries flushed to MODELFN_MONITOR_STORE: written, or failed (the store refused).",
                        ("model", "outcome")),
    "drift_calls_dropped": ("modelfn_drift_calls_dropped", "counter",
                            "Model calls the drift watch did not count: its queue was full.", ("model",)),
    "drift_score": ("modelfn_drift_score", "gauge",
                    "Each feature's drift in this instance's last window against the reference (normed Wasserstein "
                    "or Jensen-Shannon distance; drift at 0.1).", ("model", "feature")),
}  # fmt: skip
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def scrape(function: Servable, request: Request) -> Response:
    """``GET /metrics``."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(RecorderCollector(RECORDER))
    return Response(200, generate_latest(registry), {"Content-Type": CONTENT_TYPE})


class RecorderCollector:
    """A prometheus-client collector reading a :class:`Recorder`."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        counters, histograms, gauges = self.recorder.snapshot()
        for recorded, (name, kind, documentation, labels) in FAMILIES.items():
            if kind == "counter":
                counter = CounterMetricFamily(name, documentation, labels=labels)
                for (key, values), value in sorted(counters.items()):
                    if key == recorded:
                        counter.add_metric(list(values), value)
                yield counter
            elif kind == "gauge":
                gauge = GaugeMetricFamily(name, documentation, labels=labels)
                for (key, values), value in sorted(gauges.items()):
                    if key == recorded:
                        gauge.add_metric(list(values), value)
                yield gauge
            else:
                histogram_family = HistogramMetricFamily(name, documentation, labels=labels)
                for (key, values), histogram in sorted(histograms.items(), key=lambda item: item[0]):
                    if key == recorded:
                        histogram_family.add_metric(list(values), histogram.cumulative(), histogram.total)
                yield histogram_family
