"""Answers to messages, sent on: a Pub/Sub topic (Google Cloud) or an SQS queue (AWS).

Each answer carries the request's message id as its ``request_id`` attribute. Sending follows
the outbox pattern with the stored answer: the answer is stored first (once per message id),
then sent, then marked sent. A crash before the mark sends it again on redelivery, so a consumer
may see an answer twice and deduplicates by ``request_id``; no answer is ever lost.

Pub/Sub is reached over its REST API (:mod:`modelfn.runtime.stores.pubsub`).
"""

from __future__ import annotations

from typing import Any

from modelfn.errors import ContractError, StoreUnavailable


def send(settings: Any, request_id: str, body: bytes) -> str:
    """Send ``body`` where the settings say; return where it went (for the stored answer)."""
    if settings.result_topic:
        _publish(settings.result_topic, request_id, body)
        return settings.result_topic
    if settings.result_queue:
        _enqueue(settings.result_queue, request_id, body)
        return settings.result_queue
    return ""


def _publish(topic: str, request_id: str, body: bytes) -> None:
    from modelfn.runtime.stores.pubsub import check_topic, publish

    publish(check_topic(topic, "MODELFN_RESULT_TOPIC"), [(body, {"request_id": request_id})])


def _enqueue(queue_url: str, request_id: str, body: bytes) -> None:
    import boto3
    import botocore.exceptions as bexc

    message: dict[str, Any] = {
        "QueueUrl": queue_url,
        "MessageBody": body.decode(),
        "MessageAttributes": {"request_id": {"DataType": "String", "StringValue": request_id}},
    }
    if queue_url.endswith(".fifo"):  # a FIFO queue also drops a resend within 5 minutes
        message.update(MessageGroupId="modelfn", MessageDeduplicationId=request_id[:128])
    try:
        boto3.client("sqs").send_message(**message)
    except (bexc.EndpointConnectionError, bexc.ConnectTimeoutError, bexc.ReadTimeoutError) as exc:
        raise StoreUnavailable(f"sending to {queue_url}: {type(exc).__name__}") from None
    except bexc.ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status >= 500:
            raise StoreUnavailable(f"sending to {queue_url}: HTTP {status}") from None
        raise ContractError(
            f"sending to {queue_url} was refused: {exc.response.get('Error', {}).get('Code')}"
        ) from None
