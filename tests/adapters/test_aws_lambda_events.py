"""S3 notifications and SQS batches into the Lambda handler, on moto's S3 and SQS.

The handler is the unit Lambda calls (no local Lambda runtime without Docker): it gets the record
shape S3 documents, including URL-form-encoded keys, and reads and writes through the real SDK.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote_plus

import boto3
import numpy as np
import orjson
import pytest
import yaml
from emulators import new_bucket
from helpers import DIGITS, free_port

from modelfn.adapters.aws_lambda import lambda_function
from modelfn.settings import Settings


@pytest.fixture(scope="module")
def bucket(emulators) -> str:
    return new_bucket("s3")


@pytest.fixture(scope="module")
def handler(emulators, tmp_path_factory):
    database = tmp_path_factory.mktemp("db") / "results.db"
    return lambda_function(DIGITS, settings=Settings(batch_database=f"sqlite:///{database}", batch_chunk_rows=64))


def put(bucket: str, key: str, data: bytes) -> dict:
    s3 = boto3.client("s3")
    result = s3.put_object(Bucket=bucket, Key=key, Body=data)
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-23T12:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:EXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "modelfn",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "EXAMPLE"}, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": quote_plus(key),
                "size": len(data),
                "eTag": result["ETag"].strip('"'),
                "sequencer": "0A1B2C3D4E5F678901",
            },
        },
    }


def get(bucket: str, key: str) -> bytes | None:
    try:
        return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except boto3.client("s3").exceptions.NoSuchKey:
        return None


def csv_of(rows: np.ndarray) -> bytes:
    return ("\n".join(",".join(str(int(v)) for v in row) for row in rows) + "\n").encode()


def test_created_objects_are_predicted(handler, bucket, heldout) -> None:
    x, y = heldout
    records = [put(bucket, "incoming/a b.csv", csv_of(x[:100])), put(bucket, "incoming/c.csv", csv_of(x[100:150]))]
    result = handler({"Records": records}, None)
    assert [outcome["predicted"] for outcome in result["batch"]] == [100, 50]
    lines = [orjson.loads(line) for line in get(bucket, "predictions/a b.csv.predictions.jsonl").splitlines()]
    assert np.mean([line["prediction"]["label"] for line in lines] == y[:100]) > 0.95


def test_a_duplicate_record_is_done_once(handler, bucket, heldout) -> None:
    x, _ = heldout
    record = put(bucket, "incoming/twice.csv", csv_of(x[:30]))
    first = handler({"Records": [record]}, None)["batch"][0]
    second = handler({"Records": [record]}, None)["batch"][0]
    assert "duplicate" not in first and second["duplicate"] is True


def test_records_outside_the_prefix_other_events_and_odd_names_are_acknowledged(handler, bucket, heldout) -> None:
    x, _ = heldout
    outside = put(bucket, "elsewhere/a.csv", csv_of(x[:2]))
    removed = {**put(bucket, "incoming/r.csv", csv_of(x[:2])), "eventName": "ObjectRemoved:Delete"}
    odd = put(bucket, "incoming/semi;colon.csv", csv_of(x[:2]))
    result = handler({"Records": [outside, removed, odd]}, None)
    assert [outcome.get("ignored", "")[:20] for outcome in result["batch"]] == [
        "outside the input pr",
        "invalid object key '",
    ]


def test_a_record_that_is_not_from_s3_is_refused_clearly(handler) -> None:
    result = handler({"Records": [{"eventSource": "aws:kinesis"}]}, None)
    assert result == {"ignored": "not an S3 notification record"}
    assert json.dumps(result)


# --- SQS ---------------------------------------------------------------------------------------

IMAGE = yaml.safe_load((DIGITS / "modelfn.yaml").read_text())["example"]["image"]  # a held-out "2"


def sqs_batch(bodies: list[str]) -> dict:
    """Messages sent to and received from moto's SQS, shaped as Lambda's event source mapping delivers them."""
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName=f"requests-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for body in bodies:
        tag = {"source": {"DataType": "String", "StringValue": "test"}}
        sqs.send_message(QueueUrl=queue, MessageBody=body, MessageAttributes=tag)
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"])["Messages"]
    records = []
    for message in received:
        attributes = {
            name: {"stringValue": value["StringValue"], "dataType": value["DataType"]}
            for name, value in message.get("MessageAttributes", {}).items()
        }
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
                "messageAttributes": attributes,
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": records}


@pytest.fixture(scope="module")
def message_handler(emulators, bucket):
    return lambda_function(DIGITS, settings=Settings(message_output=f"s3://{bucket}/results"))


def test_an_sqs_batch_is_answered_and_only_unavailable_messages_come_back(message_handler, bucket) -> None:
    good, bad = json.dumps({"image": IMAGE}), "{not json"
    batch = sqs_batch([good, bad])
    assert message_handler(batch, None) == {"batchItemFailures": []}  # a bad request is answered, not retried
    answers = {r["body"]: json.loads(get(bucket, f"results/{r['messageId']}.json")) for r in batch["Records"]}
    assert answers[good]["result"]["digit"] == 2
    assert "not valid JSON" in answers[bad]["error"]
    # Delivered again: nothing is written twice.
    assert message_handler(batch, None) == {"batchItemFailures": []}


def test_messages_that_cannot_be_stored_now_are_reported_for_redelivery(monkeypatch, bucket) -> None:
    from modelfn.runtime.stores.s3 import S3Store

    batch = sqs_batch([json.dumps({"image": IMAGE}), json.dumps({"image": IMAGE})])
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # the store stops answering
    monkeypatch.setattr(S3Store, "_client", None)
    handler = lambda_function(DIGITS, settings=Settings(message_output=f"s3://{bucket}/results"))
    result = handler(batch, None)
    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == sorted(
        r["messageId"] for r in batch["Records"]
    )
    monkeypatch.setattr(S3Store, "_client", None)


def test_answers_are_also_sent_to_a_result_queue_once_each(emulators, bucket) -> None:
    sqs = boto3.client("sqs")
    results = sqs.create_queue(QueueName=f"results-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    handler = lambda_function(DIGITS, settings=Settings(message_output=f"s3://{bucket}/results", result_queue=results))
    batch = sqs_batch([json.dumps({"image": IMAGE})])
    [record] = batch["Records"]
    # A crash right after the answer was stored, before it was sent: what the first delivery left.
    stored = {"id": record["messageId"], "model": "digits", "version": "1", "result": {"digit": 2}}
    boto3.client("s3").put_object(Bucket=bucket, Key=f"results/{record['messageId']}.json", Body=json.dumps(stored))
    assert handler(batch, None) == {"batchItemFailures": []}  # the redelivery sends it
    assert handler(batch, None) == {"batchItemFailures": []}  # and the next one does not again

    received = sqs.receive_message(QueueUrl=results, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    [answer] = received["Messages"]
    assert answer["MessageAttributes"]["request_id"]["StringValue"] == record["messageId"]
    assert json.loads(answer["Body"])["result"] == {"digit": 2}
    marked = json.loads(get(bucket, f"results/{record['messageId']}.json"))
    assert marked["sent_to"] == results

    fresh = sqs_batch([json.dumps({"image": IMAGE})])
    assert handler(fresh, None) == {"batchItemFailures": []}
    [answer] = sqs.receive_message(QueueUrl=results, MessageAttributeNames=["All"])["Messages"]
    assert json.loads(answer["Body"])["result"]["digit"] == 2
