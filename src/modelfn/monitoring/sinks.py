"""Where batches of monitoring records go: an object store (a file per batch) or a Pub/Sub topic.

``MODELFN_PAYLOAD_LOG`` names the sink: ``gs://bucket/prefix``, ``s3://bucket/prefix``, a folder
(``file:///path`` or a path), or ``pubsub://projects/<project>/topics/<topic>``. A file's key says
where it came from and when, in the layout that BigQuery's and Athena's external tables read as
partitions: ``<prefix>/model=<name>/date=<YYYY-MM-DD>/<HHMMSS>-<instance>-<sequence>.jsonl``. Each
file is created once (``expect`` absent): a retry never overwrites another batch.
"""

from __future__ import annotations

import time
from typing import Protocol


class Sink(Protocol):
    """A destination for batches of JSON records (each one line, without its newline)."""

    uri: str

    def write(self, model: str, records: list[bytes], *, instance: str, sequence: int) -> None: ...


class StoreSink:
    """A JSON Lines file per batch in a bucket or folder."""

    def __init__(self, uri: str, attempts: int = 3) -> None:
        from modelfn.runtime.stores import open_store

        self.uri = uri
        self.store, self.prefix = open_store(uri)
        self.attempts = attempts

    def write(self, model: str, records: list[bytes], *, instance: str, sequence: int) -> None:
        from modelfn.runtime.stores import ABSENT, join, with_retries

        now = time.gmtime()
        key = join(self.prefix, f"model={model}", time.strftime("date=%Y-%m-%d", now),
                   f"{time.strftime('%H%M%S', now)}-{instance}-{sequence:06d}.jsonl")  # fmt: skip
        data = b"\n".join(records) + b"\n"
        with_retries(lambda: self.store.write(key, data, expect=ABSENT), what=f"writing {self.uri}/{key}",
                     attempts=self.attempts)  # fmt: skip


class TopicSink:
    """A Pub/Sub message per record (in as few publish calls as Pub/Sub allows), with ``model`` and
    ``instance`` attributes, so that a BigQuery subscription can write them as rows."""

    def __init__(self, uri: str, attempts: int = 3) -> None:
        from modelfn.runtime.stores.pubsub import check_topic

        self.uri = uri
        self.topic = check_topic(uri.removeprefix("pubsub://"), "MODELFN_PAYLOAD_LOG")
        self.attempts = attempts

    def write(self, model: str, records: list[bytes], *, instance: str, sequence: int) -> None:
        from modelfn.runtime.stores import with_retries
        from modelfn.runtime.stores.pubsub import publish

        attributes = {"model": model, "instance": instance}
        messages = [(record, attributes) for record in records]
        with_retries(lambda: publish(self.topic, messages), what=f"publishing to {self.topic}", attempts=self.attempts)


def open_sink(uri: str, attempts: int = 3) -> Sink:
    """The sink ``uri`` names; a :class:`~modelfn.errors.ContractError` for one it cannot be."""
    if uri.startswith("pubsub://"):
        return TopicSink(uri, attempts)
    return StoreSink(uri, attempts)
