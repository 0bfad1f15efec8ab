"""Events in: an object landed in a bucket (GCS CloudEvent, S3 record) starts a batch prediction.

Every delivery ends in one of three ways:

- **done**: the batch ran, or had already run for this object generation (a duplicate);
- **ignored**: acknowledged without work, with the reason logged (outside the input prefix, the
  function's own output, an object deleted since, a name modelfn does not accept);
- **raised**: a failure worth retrying (the store or the model is unavailable); the platform
  redelivers.

A bad file is *done*: its summary and errors objects say what was wrong, and no retry loop starts.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from modelfn.errors import ContractError, InvalidInput, ModelNotReady, ObjectNotFound
from modelfn.function import Servable
from modelfn.settings import Settings

log = logging.getLogger("modelfn")

GCS_FINALIZED = "google.cloud.storage.object.v1.finalized"
S3_SOURCE = "aws:s3"


@dataclass(frozen=True)
class ObjectEvent:
    """An object that landed: where, which generation, and the delivery's id (for logs)."""

    scheme: str  # gs or s3
    bucket: str
    key: str
    generation: str
    id: str = ""

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}"


def from_cloud_event(attributes: Mapping[str, Any], data: Any) -> ObjectEvent:
    """A GCS ``object.v1.finalized`` CloudEvent (binary or structured mode: the SDK has parsed it)."""
    kind = attributes.get("type")
    if kind != GCS_FINALIZED:
        raise InvalidInput(f"event type {str(kind)[:100]!r} is not handled; this function takes {GCS_FINALIZED}")
    if (
        not isinstance(data, Mapping)
        or not isinstance(data.get("bucket"), str)
        or not isinstance(data.get("name"), str)
    ):
        raise InvalidInput("a storage event's data needs the object's `bucket` and `name`")
    # Real events carry the generation as a string (int64); accept a number too.
    generation = data.get("generation")
    return ObjectEvent(
        "gs", data["bucket"], data["name"], "" if generation is None else str(generation), str(attributes.get("id", ""))
    )


def from_s3_records(event: Mapping[str, Any]) -> list[ObjectEvent]:
    """The ``ObjectCreated`` records of an S3 notification; their keys arrive URL-form-encoded."""
    found = []
    for record in event.get("Records", []):
        if not isinstance(record, Mapping) or record.get("eventSource") != S3_SOURCE:
            raise InvalidInput("not an S3 notification record")
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            log.info("S3 %s event ignored: only ObjectCreated starts a batch", record.get("eventName"))
            continue
        s3 = record.get("s3", {})
        try:
            bucket, item = s3["bucket"]["name"], s3["object"]
            key = unquote_plus(item["key"])
        except (KeyError, TypeError):
            raise InvalidInput("an S3 record needs s3.bucket.name and s3.object.key") from None
        # versionId where the bucket is versioned, else the ETag: both change with the content.
        generation = str(item.get("versionId") or item.get("eTag") or item.get("sequencer") or "")
        request_id = str(record.get("responseElements", {}).get("x-amz-request-id", ""))
        found.append(ObjectEvent("s3", bucket, key, generation, request_id))
    return found


class BatchTrigger:
    """Turns object events into batch jobs, under the function's settings (``MODELFN_BATCH_*``)."""

    def __init__(self, servable: Servable, settings: Settings) -> None:
        self.servable = servable
        self.settings = settings
        prefix = settings.batch_input_prefix.strip("/")
        self.input_prefix = f"{prefix}/" if prefix else ""
        if not settings.batch_output and not self.input_prefix:
            # The results would land in the watched bucket, under no prefix: each would trigger again.
            raise ContractError(
                "MODELFN_BATCH_INPUT_PREFIX is empty and MODELFN_BATCH_OUTPUT is unset, so results would land "
                "where they trigger the function again: set an input prefix (e.g. incoming/) or another output"
            )
        self._database: Any = None
        self._database_lock = threading.Lock()
        self._handoff: Any = None
        if settings.batch_handoff:
            from modelfn.protocols.handoff import Handoff

            self._handoff = Handoff(settings)

    def handle(self, event: ObjectEvent) -> dict[str, Any]:
        """Run or skip one object event; the outcome as a small dict (also logged)."""
        from modelfn.batch.job import BatchJob, Location
        from modelfn.runtime.stores import open_store

        try:
            output = self.settings.batch_output or f"{event.scheme}://{event.bucket}/predictions"
            destination_store, destination_prefix = open_store(output)
            source_store, _ = open_store(f"{event.scheme}://{event.bucket}")
            reason = self._skip_reason(event, source_store.uri, destination_store.uri, destination_prefix)
            if reason:
                log.info("event %s for %s ignored: %s", event.id, event.uri, reason)
                return {"ignored": reason, "input": event.uri}
            member = self.servable.member(self.settings.batch_model or None)
            name = event.key[len(self.input_prefix) :]
            if self._handoff is not None:
                handed = self._hand_off(event, member, source_store, name, (destination_store, destination_prefix))
                if handed is not None:
                    return handed
            job = BatchJob(
                member.model(),
                chunk_rows=self.settings.batch_chunk_rows,
                max_line_bytes=self.settings.max_body_bytes,
                database=self._results_database(),
            )
            source = Location(source_store, event.key)
            return job.run(source, Location(destination_store, destination_prefix), name, event.generation)
        except ObjectNotFound:
            log.info("event %s: %s is gone; nothing to predict", event.id, event.uri)
            return {"ignored": "the object no longer exists", "input": event.uri}
        except ModelNotReady:
            raise  # the store or the model is unavailable for now: the platform redelivers
        except ContractError as exc:
            # Retrying cannot fix it (a refused name, a model that does not load, access denied):
            # acknowledge, and leave the reason in the log.
            log.error("event %s for %s not processed: %s", event.id, event.uri, exc.message)
            return {"ignored": exc.message, "input": event.uri}

    def _hand_off(self, event: ObjectEvent, member: Any, source_store: Any, name: str, output: Any) -> Any:
        """The distributed job's launch for a large file; None to predict it here."""
        from modelfn.batch.job import Location, Outputs, read_summary

        info = source_store.stat(event.key)
        if info is None:
            raise ObjectNotFound(event.uri)
        if not self._handoff.wanted(info.size):
            return None
        contract = member.contract()
        if contract.framework == "pipeline":
            log.warning("%s is %d bytes, but a pipeline is predicted in its function", event.uri, info.size)
            return None
        generation = event.generation or info.token
        done = read_summary(Outputs.under(Location(*output), name).summary)
        if done and done.get("generation") == generation and done.get("version") == contract.version:
            return {**done, "duplicate": True}
        reference = ""
        if self.settings.model:
            from modelfn.registry import ModelRef

            registry = ModelRef.parse(self.settings.model).registry
            reference = f"{registry}/{contract.name}/{contract.version}"  # the version served now, pinned
        return self._handoff.launch(source=event.uri, name=name, generation=generation, model=contract.name,
                                    version=contract.version, output=output, reference=reference,
                                    folder=member.folder)  # fmt: skip

    def _skip_reason(self, event: ObjectEvent, source: str, destination: str, destination_prefix: str) -> str:
        if not event.key.startswith(self.input_prefix):
            return f"outside the input prefix {self.input_prefix!r}"
        if source == destination and (
            not destination_prefix or event.key.startswith(destination_prefix.rstrip("/") + "/")
        ):
            return "it is one of this function's own outputs"
        return ""

    def _results_database(self) -> Any:
        if not self.settings.batch_database:
            return None
        with self._database_lock:
            if self._database is None:
                from modelfn.batch.database import ResultsDatabase

                self._database = ResultsDatabase(self.settings.batch_database)
            return self._database


# --- Messages: Pub/Sub and SQS ------------------------------------------------------------------

PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


@dataclass(frozen=True)
class MessageEvent:
    """A message whose data is a prediction request (a ``POST /predict`` body)."""

    id: str
    data: bytes
    attributes: Mapping[str, str]


def message_from_cloud_event(data: Any) -> MessageEvent:
    """A Pub/Sub ``messagePublished`` CloudEvent's data (functions-framework also turns a legacy
    push envelope into one): ``{"message": {"data": base64, "attributes", "messageId"}, ...}``."""
    import base64
    import binascii

    message = data.get("message") if isinstance(data, Mapping) else None
    if not isinstance(message, Mapping):
        raise InvalidInput("a Pub/Sub event's data needs `message`")
    identifier = message.get("messageId") or message.get("message_id")
    if not isinstance(identifier, str) or not identifier:
        raise InvalidInput("a Pub/Sub message needs its `messageId`")
    try:
        body = base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, TypeError):
        raise InvalidInput(f"message {identifier[:100]}: `data` is not valid base64") from None
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        raise InvalidInput(f"message {identifier[:100]}: `attributes` must be an object")
    return MessageEvent(identifier, body, {str(k): str(v) for k, v in attributes.items()})


def messages_from_sqs(event: Mapping[str, Any]) -> list[MessageEvent]:
    """The records of an SQS batch; the message attributes' string values become attributes."""
    found = []
    for record in event.get("Records", []):
        if not isinstance(record, Mapping) or record.get("eventSource") != "aws:sqs":
            raise InvalidInput("not an SQS record")
        identifier = record.get("messageId")
        if not isinstance(identifier, str) or not identifier:
            raise InvalidInput("an SQS record needs its messageId")
        attributes = {
            str(name): str(value.get("stringValue"))
            for name, value in (record.get("messageAttributes") or {}).items()
            if isinstance(value, Mapping) and value.get("stringValue") is not None
        }
        found.append(MessageEvent(identifier, str(record.get("body", "")).encode(), attributes))
    return found


class MessageTrigger:
    """Runs each message's request through the model and keeps the answer, once per message id.

    The answer is ``<MODELFN_MESSAGE_OUTPUT>/<message id>.json``: ``{"id", "model", "version",
    "result"}`` or ``{"id", "error"}`` for a request the model refused. It is created only if
    absent, so a redelivered message writes nothing again. A ``model`` attribute picks the
    model of a several-model function.
    """

    def __init__(self, servable: Servable, settings: Settings) -> None:
        if not settings.message_output:
            raise ContractError(
                "MODELFN_MESSAGE_OUTPUT is unset: say where message results go (gs://, s3:// or a folder)"
            )
        self.servable = servable
        self.settings = settings

    def handle(self, message: MessageEvent) -> dict[str, Any]:
        """The outcome; raises :class:`ModelNotReady` when the message should be delivered again."""
        import orjson

        from modelfn.errors import ModelfnError, PreconditionFailed
        from modelfn.http import parse_json
        from modelfn.runtime.stores import ABSENT, join, open_store

        store, prefix = open_store(self.settings.message_output)
        try:
            key = join(prefix, f"{message.id}.json")
        except ContractError:
            return {"id": message.id[:100], "ignored": "the message id cannot name an object"}
        if store.stat(key) is not None:
            return self._resend_unsent(store, key, message.id)
        outcome: dict[str, Any] = {"id": message.id}
        try:
            if len(message.data) > self.settings.max_body_bytes:
                raise InvalidInput(
                    f"the message is {len(message.data)} bytes; the limit is {self.settings.max_body_bytes}"
                )
            member = self.servable.member(message.attributes.get("model") or self.settings.batch_model or None)
            model = member.model()
            outcome.update(model=model.contract.name, version=model.contract.version)
            outcome["result"] = model.predict_json(parse_json(message.data, self.settings))
        except ModelNotReady:
            raise
        except ModelfnError as exc:
            outcome["error"] = exc.message if exc.public else exc.public_message
        try:
            written = store.write(key, orjson.dumps(outcome, option=orjson.OPT_SERIALIZE_NUMPY), expect=ABSENT)
        except PreconditionFailed:
            return {"id": message.id, "duplicate": True}  # a concurrent delivery wrote it first
        return self._send(store, key, outcome, written.token)

    def _send(self, store: Any, key: str, outcome: dict[str, Any], token: str) -> dict[str, Any]:
        """Send the stored answer on (topic or queue), then mark it sent (see :mod:`modelfn.protocols.results`)."""
        import orjson

        from modelfn.errors import PreconditionFailed
        from modelfn.protocols import results

        if not (self.settings.result_topic or self.settings.result_queue):
            return outcome
        body = orjson.dumps({k: v for k, v in outcome.items() if k != "sent_to"}, option=orjson.OPT_SERIALIZE_NUMPY)
        outcome = {**outcome, "sent_to": results.send(self.settings, outcome["id"], body)}
        with contextlib.suppress(PreconditionFailed):  # another delivery marked it meanwhile
            store.write(key, orjson.dumps(outcome, option=orjson.OPT_SERIALIZE_NUMPY), expect=token)
        return outcome

    def _resend_unsent(self, store: Any, key: str, message_id: str) -> dict[str, Any]:
        """A redelivery: done, unless the answer was stored but a crash kept it from being sent."""
        import orjson

        if not (self.settings.result_topic or self.settings.result_queue):
            return {"id": message_id, "duplicate": True}
        info = store.stat(key)
        try:
            stored = orjson.loads(store.read(key))
        except (orjson.JSONDecodeError, ObjectNotFound):
            return {"id": message_id, "duplicate": True}
        if not isinstance(stored, dict) or stored.get("sent_to") or info is None:
            return {"id": message_id, "duplicate": True}
        return {**self._send(store, key, stored, info.token), "duplicate": True}


class EventTriggers:
    """The triggers of one function, each made when its first event arrives.

    A storage trigger checks its settings when made (results must not trigger it again); a
    configuration problem is logged and the event acknowledged, since no retry can fix it.
    """

    def __init__(self, servable: Servable, settings: Settings) -> None:
        self.servable, self.settings = servable, settings
        self._made: dict[str, Any] = {}
        self._lock = threading.Lock()

    def storage(self) -> BatchTrigger:
        return self._get("storage", BatchTrigger)

    def messages(self) -> MessageTrigger:
        return self._get("messages", MessageTrigger)

    def _get(self, kind: str, factory: Any) -> Any:
        with self._lock:
            if kind not in self._made:
                self._made[kind] = factory(self.servable, self.settings)
            return self._made[kind]
