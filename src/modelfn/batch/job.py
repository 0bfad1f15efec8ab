"""One batch prediction: an input object in, predictions, errors and a summary out.

For ``<input name>`` the job writes, under the output prefix:

- ``<input name>.predictions.jsonl``: ``{"row": n, "prediction": ...}`` per predicted row;
- ``<input name>.errors.jsonl``: ``{"row": n, "error": "..."}`` per row that was not;
- ``<input name>.summary.json``: counts, the model version, the input's generation; written
  last, it is the commit mark.

At least once in, exactly once out: a job whose summary already records this input generation
and model version is a duplicate and writes nothing. Each object appears only when complete
(a finished resumable or multipart upload, a renamed file), so a crash leaves either the previous
object or the new one, never part of one; a job that
dies before its summary is simply run again by the redelivery. Rows go through the model in
chunks of ``chunk_rows`` and the outputs stream to the store a part at a time, so memory stays
bounded whatever the input's size, with nothing staged on local disk (on Cloud Functions, /tmp
is memory too).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson

from modelfn.batch.database import ResultsDatabase
from modelfn.batch.formats import BadRow, Row, UnreadableInput, format_of, open_object, read_rows
from modelfn.batch.predict import ChunkPredictor, error_line, prediction_json, prediction_line
from modelfn.errors import ObjectNotFound
from modelfn.runtime.model import LoadedModel
from modelfn.runtime.stores import Store, join

log = logging.getLogger("modelfn")


@dataclass(frozen=True)
class Location:
    """An object (or a prefix) in a store."""

    store: Store
    key: str

    @property
    def uri(self) -> str:
        return f"{self.store.uri}/{self.key}"


@dataclass(frozen=True)
class Outputs:
    predictions: Location
    errors: Location
    summary: Location

    @classmethod
    def under(cls, destination: Location, name: str) -> Outputs:
        base = join(destination.key, name)
        return cls(
            Location(destination.store, f"{base}.predictions.jsonl"),
            Location(destination.store, f"{base}.errors.jsonl"),
            Location(destination.store, f"{base}.summary.json"),
        )


class BatchJob:
    """Runs a loaded model over input objects (see the module's docstring)."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        chunk_rows: int = 1024,
        max_line_bytes: int = 4 << 20,
        database: ResultsDatabase | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.model = model
        self.predictor = ChunkPredictor(model)
        self.chunk_rows = chunk_rows
        self.max_line_bytes = max_line_bytes
        self.database = database
        #: Called after each chunk with the rows done so far and the input bytes read so far.
        self.progress = progress

    def run(self, source: Location, destination: Location, name: str, generation: str = "") -> dict[str, Any]:
        """Predict every row of ``source``; return the summary (``duplicate: true`` when already done)."""
        started = time.monotonic()
        contract = self.model.contract
        outputs = Outputs.under(destination, name)
        info = source.store.stat(source.key)
        if info is None:
            raise ObjectNotFound(f"no object at {source.uri}")
        generation = generation or info.token
        done = read_summary(outputs.summary)
        if done and done.get("generation") == generation and done.get("version") == contract.version:
            log.info("batch %s (generation %s) already done; duplicate delivery ignored", source.uri, generation)
            return {**done, "duplicate": True}
        summary: dict[str, Any] = {
            "input": source.uri,
            "generation": generation,
            "model": contract.name,
            "version": contract.version,
            "rows": 0,
            "predicted": 0,
            "failed": 0,
            "predictions": outputs.predictions.uri,
            "errors": outputs.errors.uri,
        }
        # Both objects stream to the store a part at a time and appear only if the job finishes.
        with (
            outputs.predictions.store.writer(outputs.predictions.key) as predictions,
            outputs.errors.store.writer(outputs.errors.key) as errors,
        ):
            try:
                fmt = format_of(source.key)
                summary["format"] = fmt
                stream = open_object(source.store, source.key, info.size)
                rows = read_rows(stream, fmt, contract, max_line_bytes=self.max_line_bytes)
                self._predict_all(rows, fmt, predictions, errors, summary, source.uri, generation, stream.raw)
            except UnreadableInput as exc:
                # The file as a whole cannot be read: one clear error, and the event is done.
                summary["error"] = exc.message
                errors.write(error_line(None, exc.message))
        summary["seconds"] = round(time.monotonic() - started, 3)
        outputs.summary.store.write(outputs.summary.key, orjson.dumps(summary, option=orjson.OPT_INDENT_2))
        log.info(
            "batch %s: %d rows, %d predicted, %d failed in %.2f s",
            source.uri, summary["rows"], summary["predicted"], summary["failed"], summary["seconds"],
        )  # fmt: skip
        return summary

    def _predict_all(
        self,
        rows: Iterable[Row | BadRow],
        fmt: str,
        predictions: IO[bytes],
        errors: IO[bytes],
        summary: dict[str, Any],
        source: str,
        generation: str,
        raw: Any,
    ) -> None:
        contract = self.model.contract
        for chunk in _chunks(rows, self.chunk_rows):
            results = self.predictor.predict_chunk(chunk, fmt)
            stored: list[tuple[int, str]] = []
            for number, outcome in results:
                summary["rows"] += 1
                if isinstance(outcome, BadRow):
                    summary["failed"] += 1
                    errors.write(error_line(number, outcome.error))
                    continue
                summary["predicted"] += 1
                prediction = prediction_json(outcome)
                predictions.write(prediction_line(number, prediction))
                if self.database is not None:
                    stored.append((number, prediction.decode()))
            if stored and self.database is not None:
                self.database.upsert(
                    source=source, model=contract.name, version=contract.version, generation=generation, rows=stored
                )
            if self.progress is not None:
                self.progress(summary["rows"], raw.position)


def _chunks(rows: Iterable[Row | BadRow], size: int) -> Iterator[list[Row | BadRow]]:
    chunk: list[Row | BadRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def read_summary(location: Location) -> dict[str, Any] | None:
    try:
        value = orjson.loads(location.store.read(location.key))
    except ObjectNotFound:
        return None
    except orjson.JSONDecodeError:
        return None  # not ours, or damaged: the job runs again and replaces it
    return value if isinstance(value, dict) else None
