"""Payload logging over real stores: sampled requests and their answers as CloudEvents records, a file per batch.

In-process (``handle_request``, the request path every adapter calls) on a folder, GCS's and S3's
emulators; through a real ``modelfn serve`` process for what SIGTERM must flush; Pub/Sub's emulator
for a topic; and a sink that refuses every write, which loses records but no request.
"""

from __future__ import annotations

import json
import time

import numpy as np
import orjson
import pytest
from helpers import DIGITS, copy_function, running

from modelfn.adapters.dispatch import handle_request
from modelfn.adapters.process import build_servable
from modelfn.http import Request
from modelfn.monitoring.payload import payload_log
from modelfn.observability.metrics import RECORDER
from modelfn.runtime.stores import open_store
from modelfn.settings import Settings

ROW = np.arange(64, dtype=np.float32).tolist()


def infer(row: list[float], request_id: str) -> Request:
    body = {"id": request_id, "inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": row}]}
    return Request("POST", "/v2/models/digits/infer", orjson.dumps(body), {"Content-Type": "application/json"})


def records_in(uri: str) -> tuple[list[str], list[dict]]:
    """Every file under ``uri`` and the records in them."""
    store, prefix = open_store(uri)
    keys = sorted(store.list(prefix))
    records = [json.loads(line) for key in keys for line in store.read(key).decode().splitlines()]
    return keys, records


def counted(model: str, outcome: str) -> float:
    return RECORDER.snapshot()[0].get(("payload_records", (model, outcome)), 0.0)


def test_every_request_is_recorded_in_batches_on_each_store(store_uri: str) -> None:
    uri = f"{store_uri}/payloads"
    settings = Settings(payload_log=uri, payload_batch=10, payload_flush_s=600)
    function = build_servable(DIGITS, None, settings)[0]
    written = counted("digits", "written")
    answers = [handle_request(function, infer(ROW, f"r-{n}")) for n in range(25)]
    bad = Request("POST", "/v2/models/digits/infer", b'{"inputs": [{"name": "pixels"}]}', {})
    answers.append(handle_request(function, bad))
    answers.append(handle_request(function, Request("GET", "/v2/health/live")))  # reaches no model: not recorded
    assert [a.status for a in answers] == [200] * 25 + [400, 200]
    log = payload_log(settings)
    deadline = time.monotonic() + 60  # two full batches are written by the writer thread, in the background
    while counted("digits", "written") - written < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counted("digits", "written") - written == 20 and len(records_in(uri)[0]) == 2
    log.flush()  # the rest (at exit this is close(), SIGTERM included)
    keys, records = records_in(uri)
    assert len(keys) == 3 and all("model=digits/date=" in key and key.endswith(".jsonl") for key in keys)
    assert [r["id"] for r in records[:25]] == [f"r-{n}" for n in range(25)]  # the OIP body's own id, in order
    first = records[0]
    assert first["specversion"] == "1.0" and first["type"] == "org.modelfn.inference"
    assert (first["model"], first["modelversion"], first["status"]) == ("digits", "1", 200)
    assert first["route"] == "/v2/models/{name}[/versions/{version}]/infer" and first["latencyms"] > 0
    assert first["data"]["request"]["inputs"][0]["data"] == ROW
    assert first["data"]["response"]["id"] == "r-0" and first["data"]["response"]["outputs"]
    assert records[-1]["status"] == 400 and "error" in records[-1]["data"]["response"]
    assert len({r["source"] for r in records}) == 1 and len({r["id"] for r in records}) == 26


def test_sampling_and_the_contracts_redactions(tmp_path) -> None:
    folder = copy_function(tmp_path, monitoring={"payload": {"omit": ["secret"], "hash": ["pixels", "user"]}})
    uri = (tmp_path / "log").as_uri()
    settings = Settings(payload_log=uri, payload_sample=0.25, payload_hash_key="k1")
    function = build_servable(folder, None, settings)[0]
    for n in range(400):
        handle_request(function, infer(ROW, f"s-{n}"))
    body = {"image": np.zeros((8, 8)).tolist(), "user": "ada@example.com", "secret": "s3cr3t"}
    headers = {"Content-Type": "application/json", "X-Request-Id": "p-1"}
    for _ in range(40):  # none of 40 sampled at 0.25: once in 100,000 runs
        assert handle_request(function, Request("POST", "/predict", orjson.dumps(body), headers)).status == 200
    payload_log(settings).flush()
    records = records_in(uri)[1]
    sampled = [r for r in records if r["id"].startswith("s-")]
    assert 50 <= len(sampled) <= 150  # a quarter of 400, give or take 5 standard deviations
    tensor = sampled[0]["data"]["request"]["inputs"][0]
    assert tensor["name"] == "pixels" and tensor["data"].startswith("sha256:") and len(tensor["data"]) == 71
    assert len({r["data"]["request"]["inputs"][0]["data"] for r in sampled}) == 1  # the same value, the same hash
    posted = [r for r in records if r["id"] == "p-1"]
    assert posted, "no /predict request was sampled"
    sent = posted[0]["data"]["request"]
    assert "secret" not in sent and sent["user"].startswith("sha256:") and sent["image"] == body["image"]
    assert "ada" not in json.dumps(records)


def test_a_failing_sink_loses_records_never_requests(tmp_path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the log's folder should be")
    settings = Settings(payload_log=(blocked / "log").as_uri(), payload_batch=5, payload_queue=20, store_attempts=1)
    function = build_servable(DIGITS, None, settings)[0]
    failed, dropped = counted("digits", "failed"), counted("digits", "dropped")
    log = payload_log(settings)
    with log._writing:  # the writer is busy (a slow sink): the queue fills and then drops
        statuses = [handle_request(function, infer(ROW, f"f-{n}")).status for n in range(30)]
    assert statuses == [200] * 30
    assert counted("digits", "dropped") - dropped == 10
    log.flush()
    assert counted("digits", "failed") - failed == 20


def test_sigterm_writes_what_is_waiting(tmp_path) -> None:
    uri = (tmp_path / "log").as_uri()
    env = {"MODELFN_PAYLOAD_LOG": uri, "MODELFN_PAYLOAD_FLUSH_S": "3600"}
    with running(DIGITS, tmp_path / "serve.log", env) as server:
        import requests

        for n in range(7):
            body = json.loads(infer(ROW, f"t-{n}").body)
            assert requests.post(f"{server.url}/v2/models/digits/infer", json=body, timeout=60).status_code == 200
        assert records_in(uri)[0] == []  # not due: nothing written yet
    keys, records = records_in(uri)
    assert len(keys) == 1 and [r["id"] for r in records] == [f"t-{n}" for n in range(7)], server.log()


@pytest.mark.slow
def test_a_pubsub_topic_gets_a_message_per_record(pubsub_emulator: str, monkeypatch) -> None:
    import base64

    import requests

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.split("/")[2])
    topic, subscription = f"{pubsub_emulator}/topics/payloads", f"{pubsub_emulator}/subscriptions/payloads"
    assert requests.put(topic, timeout=30).status_code in (200, 409)
    assert requests.put(subscription, json={"topic": topic.split("/v1/")[1]}, timeout=30).status_code in (200, 409)
    settings = Settings(payload_log=f"pubsub://{topic.split('/v1/')[1]}", payload_batch=4, payload_flush_s=600)
    function = build_servable(DIGITS, None, settings)[0]
    for n in range(4):
        assert handle_request(function, infer(ROW, f"q-{n}")).status == 200
    payload_log(settings).flush()
    pull = {"maxMessages": 10, "returnImmediately": True}
    pulled = requests.post(f"{subscription}:pull", json=pull, timeout=60).json()["receivedMessages"]
    messages = [m["message"] for m in pulled]
    assert sorted(json.loads(base64.b64decode(m["data"]))["id"] for m in messages) == [f"q-{n}" for n in range(4)]
    assert {m["attributes"]["model"] for m in messages} == {"digits"}


def test_lambda_writes_a_due_batch_before_the_invocation_returns(tmp_path) -> None:
    """Lambda freezes the process once an invocation returns: no writer thread, the handler writes."""
    from modelfn.adapters.aws_lambda import lambda_function

    uri = (tmp_path / "log").as_uri()
    settings = Settings(payload_log=uri, payload_batch=3, payload_flush_s=3600)
    handler = lambda_function(str(DIGITS / "main.py"), settings=settings)
    assert payload_log(settings).background is False
    body = json.loads(infer(ROW, "x").body)
    for n in range(5):
        body["id"] = f"l-{n}"
        headers = {"Content-Type": "application/json"}
        event = {"httpMethod": "POST", "path": "/v2/models/digits/infer", "headers": headers,
                 "body": json.dumps(body), "isBase64Encoded": False, "requestContext": {}}  # fmt: skip
        assert handler(event, None)["statusCode"] == 200
        written = [r["id"] for r in records_in(uri)[1]]
        assert written == ([] if n < 2 else ["l-0", "l-1", "l-2"])  # the batch of three, once due
    assert payload_log(settings)._thread is None
