"""Storage events through a real functions-framework server, with the objects in the GCS emulator.

Eventarc delivers a CloudEvent over HTTP in binary mode (``ce-*`` headers, the object as the body);
other producers use structured mode (the whole event as ``application/cloudevents+json``). Both
reach ``handle_event`` in ``functions/digits/main.py``, as do Pub/Sub messages (as Eventarc's
``messagePublished`` events, and as a push subscription's envelope, which functions-framework
converts).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
import requests
import yaml
from helpers import DIGITS, copy_function
from storage_events import binary_event, ff_server, read, upload

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bucket(emulators) -> str:
    from emulators import new_bucket

    return new_bucket("gs")


@pytest.fixture(scope="module")
def server(emulators, bucket, tmp_path_factory) -> Iterator[dict[str, str]]:
    folder = copy_function(tmp_path_factory.mktemp("fn"), DIGITS)
    database = tmp_path_factory.mktemp("db") / "results.db"
    log = tmp_path_factory.mktemp("log") / "ff.log"
    env = {
        "MODELFN_BATCH_DATABASE": f"sqlite:///{database}",
        "MODELFN_BATCH_CHUNK_ROWS": "100",
        "MODELFN_MESSAGE_OUTPUT": f"gs://{bucket}/results",
    }
    with ff_server(folder, log, env) as url:
        yield {"url": url, "log": str(log), "database": str(database)}


def structured_event(url: str, data: dict[str, str]) -> requests.Response:
    event = {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "type": "google.cloud.storage.object.v1.finalized",
        "source": f"//storage.googleapis.com/projects/_/buckets/{data['bucket']}",
        "subject": f"objects/{data['name']}",
        "datacontenttype": "application/json",
        "data": data,
    }
    return requests.post(
        url, data=json.dumps(event), headers={"Content-Type": "application/cloudevents+json"}, timeout=60
    )


def csv_of(rows: np.ndarray) -> bytes:
    return ("\n".join(",".join(str(int(v)) for v in row) for row in rows) + "\n").encode()


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_a_finalized_object_is_predicted_into_the_bucket(server, bucket, heldout, mode) -> None:
    x, y = heldout
    name = f"incoming/{mode}/digits.csv"
    data = upload(bucket, name, csv_of(x[:250]) + b"1,2,3\n")
    answer = (binary_event if mode == "binary" else structured_event)(server["url"], data)
    assert answer.status_code == 200, answer.text

    lines = [
        orjson.loads(line) for line in read(bucket, f"predictions/{mode}/digits.csv.predictions.jsonl").splitlines()
    ]
    assert len(lines) == 250
    accuracy = np.mean([line["prediction"]["label"] for line in lines] == y[:250])
    assert accuracy > 0.95
    errors = [orjson.loads(line) for line in read(bucket, f"predictions/{mode}/digits.csv.errors.jsonl").splitlines()]
    assert errors == [{"row": 251, "error": "expected 64 numbers, got 3"}]
    summary = json.loads(read(bucket, f"predictions/{mode}/digits.csv.summary.json"))
    assert summary["generation"] == data["generation"] and summary["predicted"] == 250


def test_a_duplicate_delivery_writes_nothing_new(server, bucket, heldout) -> None:
    import sqlite3

    from google.cloud import storage

    x, _ = heldout
    data = upload(bucket, "incoming/dup.csv", csv_of(x[:120]))
    assert binary_event(server["url"], data).status_code == 200
    output = storage.Client().bucket(bucket).get_blob("predictions/dup.csv.predictions.jsonl")
    assert binary_event(server["url"], data).status_code == 200  # delivered again
    again = storage.Client().bucket(bucket).get_blob("predictions/dup.csv.predictions.jsonl")
    assert again.generation == output.generation
    with sqlite3.connect(server["database"]) as connection:
        [(count,)] = connection.execute(
            "SELECT COUNT(*) FROM modelfn_predictions WHERE source = ?", (f"gs://{bucket}/incoming/dup.csv",)
        ).fetchall()
    assert count == 120


def test_objects_outside_the_input_prefix_and_its_own_outputs_are_acknowledged(server, bucket, heldout) -> None:
    x, _ = heldout
    for name in ("elsewhere/x.csv", "predictions/x.csv.predictions.jsonl"):
        data = upload(bucket, name, csv_of(x[:3]))
        assert binary_event(server["url"], data).status_code == 200
    assert read(bucket, "predictions/elsewhere/x.csv.predictions.jsonl") is None
    assert read(bucket, "predictions/x.csv.predictions.jsonl.predictions.jsonl") is None
    assert "outside the input prefix 'incoming/'" in Path(server["log"]).read_text()


def test_an_unreadable_file_is_acknowledged_with_one_error(server, bucket) -> None:
    data = upload(bucket, "incoming/table.parquet", b"PAR1....")
    assert binary_event(server["url"], data).status_code == 200
    [error] = [orjson.loads(line) for line in read(bucket, "predictions/table.parquet.errors.jsonl").splitlines()]
    assert error["row"] is None and "unknown input format .parquet" in error["error"]


def test_other_event_types_and_a_deleted_object_are_acknowledged(server, bucket) -> None:
    data = upload(bucket, "incoming/gone.csv", b"1\n")
    other = binary_event(server["url"], data, kind="google.cloud.storage.object.v1.deleted")
    assert other.status_code == 200
    from google.cloud import storage

    storage.Client().bucket(bucket).blob("incoming/gone.csv").delete()
    assert binary_event(server["url"], data).status_code == 200
    assert read(bucket, "predictions/gone.csv.summary.json") is None


def test_a_request_that_is_not_a_cloud_event_is_a_400(server) -> None:
    answer = requests.post(server["url"], data=b"{}", headers={"Content-Type": "application/json"}, timeout=10)
    assert answer.status_code == 400


IMAGE = yaml.safe_load((DIGITS / "modelfn.yaml").read_text())["example"]["image"]  # a held-out "2"


def pubsub_data(message_id: str, body: bytes, **attributes: str) -> dict:
    return {
        "message": {
            "data": base64.b64encode(body).decode(),
            "attributes": attributes,
            "messageId": message_id,
            "publishTime": "2026-11-23T12:00:00.000Z",
        },
        "subscription": "projects/test/subscriptions/predict",
    }


def pubsub_event(url: str, data: dict) -> requests.Response:
    headers = {
        "ce-id": data["message"]["messageId"],
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/test/topics/requests",
        "Content-Type": "application/json",
    }
    return requests.post(url, data=json.dumps(data), headers=headers, timeout=30)


def test_a_pubsub_message_is_answered_once_into_storage(server, bucket) -> None:
    message_id = uuid.uuid4().hex
    data = pubsub_data(message_id, json.dumps({"image": IMAGE}).encode())
    assert pubsub_event(server["url"], data).status_code == 200
    result = json.loads(read(bucket, f"results/{message_id}.json"))
    assert result["result"]["digit"] == 2 and (result["model"], result["version"]) == ("digits", "1")

    from google.cloud import storage

    first = storage.Client().bucket(bucket).get_blob(f"results/{message_id}.json").generation
    assert pubsub_event(server["url"], data).status_code == 200  # redelivered
    assert storage.Client().bucket(bucket).get_blob(f"results/{message_id}.json").generation == first


def test_a_push_envelope_is_converted_and_answered(server, bucket) -> None:
    """A push subscription's wrapped body, posted as Pub/Sub sends it (no ce-* headers)."""
    message_id = uuid.uuid4().hex
    envelope = pubsub_data(message_id, json.dumps({"image": IMAGE}).encode())
    envelope["message"]["message_id"] = message_id
    answer = requests.post(server["url"], json=envelope, timeout=30)
    assert answer.status_code == 200, answer.text
    assert json.loads(read(bucket, f"results/{message_id}.json"))["result"]["digit"] == 2


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "not valid JSON"),
        (json.dumps({"image": [[99] * 8] * 8}).encode(), "pixel values must be between"),
    ],
)
def test_a_bad_request_message_gets_an_error_answer_not_a_retry(server, bucket, body, error) -> None:
    message_id = uuid.uuid4().hex
    assert pubsub_event(server["url"], pubsub_data(message_id, body)).status_code == 200
    result = json.loads(read(bucket, f"results/{message_id}.json"))
    assert error in result["error"] and "result" not in result


def test_a_message_published_to_the_emulator_is_pushed_and_answered(server, bucket, pubsub_emulator) -> None:
    """Pub/Sub for real: a topic, a push subscription to the function, a published request."""
    topic, subscription = f"{pubsub_emulator}/topics/requests", f"{pubsub_emulator}/subscriptions/predict"
    assert requests.put(topic, json={}, timeout=10).status_code == 200
    push = {"topic": "projects/test/topics/requests", "pushConfig": {"pushEndpoint": server["url"] + "/"}}
    assert requests.put(subscription, json=push, timeout=10).status_code == 200
    body = base64.b64encode(json.dumps({"image": IMAGE}).encode()).decode()
    published = requests.post(f"{topic}:publish", json={"messages": [{"data": body}]}, timeout=10)
    [message_id] = published.json()["messageIds"]

    deadline = time.monotonic() + 30
    while (result := read(bucket, f"results/{message_id}.json")) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert result is not None, "the push never arrived"
    assert json.loads(result)["result"]["digit"] == 2


def test_answers_are_published_to_a_result_topic(emulators, bucket, pubsub_emulator, tmp_path) -> None:
    """Requests pushed from one topic, answers published to another, pulled back with their request id."""
    host = pubsub_emulator.split("/")[2]
    for name in ("requests2", "answers"):
        assert requests.put(f"{pubsub_emulator}/topics/{name}", json={}, timeout=10).status_code == 200
    pull = {"topic": "projects/test/topics/answers"}
    assert requests.put(f"{pubsub_emulator}/subscriptions/answers", json=pull, timeout=10).status_code == 200
    env = {
        "MODELFN_MESSAGE_OUTPUT": f"gs://{bucket}/results",
        "MODELFN_RESULT_TOPIC": "projects/test/topics/answers",
        "PUBSUB_EMULATOR_HOST": host,
    }
    folder = copy_function(tmp_path, DIGITS)
    with ff_server(folder, tmp_path / "ff.log", env) as url:
        push = {"topic": "projects/test/topics/requests2", "pushConfig": {"pushEndpoint": url + "/"}}
        assert requests.put(f"{pubsub_emulator}/subscriptions/push2", json=push, timeout=10).status_code == 200
        body = base64.b64encode(json.dumps({"image": IMAGE}).encode()).decode()
        published = requests.post(
            f"{pubsub_emulator}/topics/requests2:publish", json={"messages": [{"data": body}]}, timeout=10
        )
        [request_id] = published.json()["messageIds"]
        received: list = []
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline:
            answer = requests.post(
                f"{pubsub_emulator}/subscriptions/answers:pull", json={"maxMessages": 10}, timeout=10
            )
            received = answer.json().get("receivedMessages", [])
            time.sleep(0.2)
    assert received, (tmp_path / "ff.log").read_text()
    [message] = received
    assert message["message"]["attributes"] == {"request_id": request_id}
    assert json.loads(base64.b64decode(message["message"]["data"]))["result"]["digit"] == 2
    assert json.loads(read(bucket, f"results/{request_id}.json"))["sent_to"] == "projects/test/topics/answers"


def test_a_push_needs_an_id_token_of_an_allowed_service_account_when_configured(emulators, bucket, tmp_path) -> None:
    """Pub/Sub push straight to the function: the push's OIDC token is checked (test_id_tokens plays Google)."""
    from credentials import AUDIENCE, PUSHER, CertsServer, Signer

    signer = Signer("push-kid")
    certs = CertsServer([signer])
    env = {"MODELFN_MESSAGE_OUTPUT": f"gs://{bucket}/pushed", "MODELFN_ID_TOKEN_AUDIENCE": AUDIENCE,
           "MODELFN_ID_TOKEN_EMAILS": PUSHER, "MODELFN_ID_TOKEN_CERTS_URL": certs.url}  # fmt: skip
    try:
        with ff_server(copy_function(tmp_path, DIGITS), tmp_path / "ff.log", env) as url:
            for token, status in [(None, 401), (signer.token(email="x@gmail.com"), 401), (signer.token(), 200)]:
                message_id = uuid.uuid4().hex
                envelope = pubsub_data(message_id, json.dumps({"image": IMAGE}).encode())
                envelope["message"]["message_id"] = message_id
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                assert requests.post(url, json=envelope, headers=headers, timeout=30).status_code == status
                stored = read(bucket, f"pushed/{message_id}.json")
                assert (stored is not None) == (status == 200)  # a refused push runs nothing
    finally:
        certs.server.shutdown()
