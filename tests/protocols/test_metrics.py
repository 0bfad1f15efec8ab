"""``GET /metrics`` scraped from a real server and read with the Prometheus text parser; its log read as JSON."""

from __future__ import annotations

from pathlib import Path

import orjson
import requests
from helpers import DIGITS, running
from prometheus_client.parser import text_string_to_metric_families

from modelfn.observability.logs import trace_id

IMAGE = {"image": [[0, 2, 13, 16, 10, 0, 0, 0]] * 8}


def scrape(url: str) -> dict[str, list]:
    response = requests.get(url + "/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def value(samples: list, name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_requests_errors_latency_loads_and_cold_start_are_counted(tmp_path: Path) -> None:
    with running(DIGITS, tmp_path / "serve.log") as server:
        for _ in range(5):
            assert requests.post(server.url + "/predict", json=IMAGE, timeout=10).status_code == 200
        assert requests.post(server.url + "/predict", json={"image": 1}, timeout=10).status_code == 400
        oip = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}]}
        assert requests.post(server.url + "/v2/models/digits/infer", json=oip, timeout=10).status_code == 200
        assert requests.get(server.url + "/no/such/route", timeout=10).status_code == 404
        families = scrape(server.url)
        log = server.log()

    requests_total = families["modelfn_requests"]
    assert value(requests_total, "modelfn_requests_total", route="/predict", code="200", model="digits",
                 version="1") == 5  # fmt: skip
    assert value(requests_total, "modelfn_requests_total", route="/predict", code="400") == 1
    assert value(requests_total, "modelfn_requests_total", route="/v2/models/{name}[/versions/{version}]/infer") == 1
    assert value(requests_total, "modelfn_requests_total", route="unmatched", code="404") == 1  # no path as a label
    latency = families["modelfn_request_duration_seconds"]
    assert value(latency, "modelfn_request_duration_seconds_count", route="/predict") == 6
    assert value(latency, "modelfn_request_duration_seconds_bucket", route="/predict", le="+Inf") == 6
    assert value(families["modelfn_model_loads"], "modelfn_model_loads_total", model="digits") == 1
    assert value(families["modelfn_cold_starts"], "modelfn_cold_starts_total", model="digits") == 1
    phases = {s.labels["phase"] for s in families["modelfn_cold_start_phase_seconds"]}
    assert phases == {"fetch", "deserialize", "verify", "hooks", "warmup"}
    cache = families["modelfn_model_cache_events"]
    assert value(cache, "modelfn_model_cache_events_total", event="miss") == 1
    assert value(cache, "modelfn_model_cache_events_total", event="hit") == 6

    lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert lines and all({"severity", "message", "time", "logger"} <= set(line) for line in lines)
    served = [line for line in lines if line["logger"] == "modelfn.request" and line["route"] != "/v2/health/live"]
    assert len(served) == 9  # one line per request, the scrape included (and the start-up's liveness probes)
    first = served[0]
    assert first["model"] == "digits" and first["version"] == "1" and first["httpRequest"]["status"] == 200
    assert first["latency_ms"] > 0 and first["route"] == "/predict"


def test_trace_ids_are_read_from_w3c_google_and_aws_headers(tmp_path: Path) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id({"traceparent": f"00-{trace}-00f067aa0ba902b7-01"}) == trace
    assert trace_id({"X-Cloud-Trace-Context": f"{trace.upper()}/1;o=1"}) == trace
    assert trace_id({"X-Amzn-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"}) == (
        "1-5759e988-bd862e3fe1be46a994272793"
    )
    assert trace_id({"traceparent": "00-nothex-00f067aa0ba902b7-01\nforged"}) == ""
    env = {"MODELFN_TRACE_PROJECT": "my-project"}
    with running(DIGITS, tmp_path / "serve.log", env) as server:
        headers = {"traceparent": f"00-{trace}-00f067aa0ba902b7-01"}
        assert requests.post(server.url + "/predict", json=IMAGE, headers=headers, timeout=10).status_code == 200
        log = server.log()
    [line] = [orjson.loads(x) for x in log.splitlines() if '"modelfn.request"' in x and '"/predict"' in x]
    assert line["trace_id"] == trace
    assert line["logging.googleapis.com/trace"] == f"projects/my-project/traces/{trace}"
