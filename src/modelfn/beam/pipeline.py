"""``modelfn batch FOLDER SOURCE --output URI --runner beam``: the single-machine job, on Apache Beam.

The pipeline writes what :class:`modelfn.batch.job.BatchJob` writes, byte for byte: for each input
file, ``<name>.predictions.jsonl``, ``<name>.errors.jsonl`` and ``<name>.summary.json``, the
summary last, as the commit mark. Its stages::

    inputs ─ read chunks of rows ─ Reshuffle ─ RunInference(model_handler) ─┐
                     └─ one marker per input (its format, or why it cannot be read) ─┴─ GroupByKey(input) ─ write

- **Reading** is the single-machine reader (:mod:`modelfn.batch.formats`), one input per element,
  so row numbers are the same. Rows travel in chunks of the batch size (the contract's batching
  block, else 1,024 rows): one element per chunk through the Reshuffle, which spreads one file's
  chunks over every worker, and through RunInference, so Beam's cost per element is paid once a
  chunk. The chunk is the inference call, as in the single-machine job.
- **Predicting** is :class:`~modelfn.beam.handler.ModelfnHandler`: the contract's checks, hooks and
  predictor; a bad row becomes an error row, never a failed bundle.
- **Writing** gathers one input's results on one worker, sorts them by row and writes each object
  whole (it appears only when complete); the summary goes last. A retried bundle rewrites the same
  bytes; database rows are upserts keyed by input, row, model and version.
- **Exactly once on re-run**: before the pipeline starts, an input whose summary already records
  its generation and this model version is skipped; nothing of it is written again.

The model is loaded and verified where the job is launched before any worker starts, so a corrupt
or mis-pinned artifact stops the job before a row is read; each worker verifies it again on load.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import orjson
from apache_beam.ml.inference.base import PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from modelfn.batch.database import ResultsDatabase
from modelfn.batch.formats import UnreadableInput, format_of, open_object, read_rows
from modelfn.batch.job import Location, Outputs, read_summary
from modelfn.batch.predict import error_line, prediction_line
from modelfn.beam.handler import DEFAULT_BATCH_ROWS, ModelfnHandler, RowChunk
from modelfn.contract import Contract
from modelfn.errors import ObjectNotFound
from modelfn.offline import ModelSource
from modelfn.runtime.stores import open_store

log = logging.getLogger("modelfn")
#: Rows per database transaction, as the single-machine job's chunks.
UPSERT_ROWS = 1024
LOCAL_RUNNER = "FnApiRunner"  # Beam's in-process portable runner; DirectRunner would try to fetch Prism


@dataclass(frozen=True)
class Shard:
    """One input file and where its results go: plain strings, so it pickles to any worker."""

    index: int
    store: str
    key: str
    name: str
    generation: str
    size: int
    output: str  # the output prefix's URI
    started: float  # when the job was launched (time.time()), for the summary's seconds

    @property
    def uri(self) -> str:
        return f"{self.store}/{self.key}"

    def location(self) -> Location:
        return Location(open_store(self.store)[0], self.key)

    def outputs(self) -> Outputs:
        store, prefix = open_store(self.output)
        return Outputs.under(Location(store, prefix), self.name)


@dataclass(frozen=True)
class _Marker:
    """Every input's one element on the write side: its format, or why the file cannot be read."""

    fmt: str | None
    error: str | None = None


def plan(inputs: Sequence[tuple[Location, str]], output: str, version: str) -> tuple[list[Shard], list[dict]]:
    """The inputs still to predict, and the summaries of those already done (same generation and version)."""
    started = time.time()
    store, prefix = open_store(output)
    todo, done = [], []
    for index, (location, name) in enumerate(inputs):
        info = location.store.stat(location.key)
        if info is None:
            raise ObjectNotFound(f"no object at {location.uri}")
        summary = read_summary(Outputs.under(Location(store, prefix), name).summary)
        if summary and summary.get("generation") == info.token and summary.get("version") == version:
            done.append({**summary, "duplicate": True})
            continue
        todo.append(Shard(index, location.store.uri, location.key, name, info.token, info.size, output, started))
    return todo, done


class _ReadRows(beam.DoFn):
    """An input file's rows, as the single-machine job reads them, and its marker."""

    MARKERS = "markers"

    def __init__(self, source: ModelSource, max_line_bytes: int, chunk_rows: int) -> None:
        self.source, self.max_line_bytes, self.chunk_rows = source, max_line_bytes, chunk_rows

    def setup(self) -> None:
        self.contract = self.source.contract()

    def process(self, shard: Shard) -> Iterator[Any]:
        try:
            fmt = format_of(shard.key)
            location = shard.location()
            stream = open_object(location.store, location.key, shard.size)
            chunk: list[Any] = []
            for row in read_rows(stream, fmt, self.contract, max_line_bytes=self.max_line_bytes):
                chunk.append(row)
                if len(chunk) >= self.chunk_rows:
                    yield RowChunk(shard.index, fmt, chunk)
                    chunk = []
            if chunk:
                yield RowChunk(shard.index, fmt, chunk)
        except UnreadableInput as exc:
            yield beam.pvalue.TaggedOutput(self.MARKERS, (shard.index, _Marker(None, exc.message)))
            return
        yield beam.pvalue.TaggedOutput(self.MARKERS, (shard.index, _Marker(fmt)))


def _keyed(result: PredictionResult) -> tuple[int, list[tuple[int, bytes, bool]]]:
    """A chunk's result lines, keyed by its input."""
    return result.example.key, result.inference


class _WriteShard(beam.DoFn):
    """Writes one input's results whole, then its summary (the commit mark)."""

    def __init__(self, shards: dict[int, Shard], model: str, version: str, database: str) -> None:
        self.shards, self.model, self.version, self.database_url = shards, model, version, database

    def setup(self) -> None:
        self.database = ResultsDatabase(self.database_url) if self.database_url else None

    def process(self, keyed: tuple[int, Iterable[Any]]) -> Iterator[dict[str, Any]]:
        index, values = keyed
        shard = self.shards[index]
        marker: _Marker | None = None
        results: list[tuple[int, bytes, bool]] = []
        for value in values:
            if isinstance(value, _Marker):
                marker = value
            else:
                results.extend(value)
        results.sort(key=lambda item: item[0])
        yield self._write(shard, marker or _Marker(None, "the input was not read"), results)

    def _write(self, shard: Shard, marker: _Marker, results: list[tuple[int, bytes, bool]]) -> dict[str, Any]:
        outputs = shard.outputs()
        failed = sum(1 for *_, is_error in results if is_error)
        summary: dict[str, Any] = {
            "input": shard.uri, "generation": shard.generation, "model": self.model, "version": self.version,
            "rows": len(results), "predicted": len(results) - failed, "failed": failed,
            "predictions": outputs.predictions.uri, "errors": outputs.errors.uri,
        }  # fmt: skip
        if marker.fmt is not None:
            summary["format"] = marker.fmt
        stored: list[tuple[int, str]] = []
        with (
            outputs.predictions.store.writer(outputs.predictions.key) as predictions,
            outputs.errors.store.writer(outputs.errors.key) as errors,
        ):
            for number, data, is_error in results:
                if is_error:
                    errors.write(data)
                    continue
                predictions.write(prediction_line(number, data))
                if self.database is not None:
                    stored.append((number, data.decode()))
                    if len(stored) >= UPSERT_ROWS:
                        self._upsert(shard, stored)
                        stored = []
            if marker.error is not None:
                summary["error"] = marker.error
                errors.write(error_line(None, marker.error))
        if stored:
            self._upsert(shard, stored)
        summary["seconds"] = round(time.time() - shard.started, 3)
        outputs.summary.store.write(outputs.summary.key, orjson.dumps(summary, option=orjson.OPT_INDENT_2))
        return summary

    def _upsert(self, shard: Shard, rows: list[tuple[int, str]]) -> None:
        assert self.database is not None
        self.database.upsert(
            source=shard.uri, model=self.model, version=self.version, generation=shard.generation, rows=rows
        )


def build(
    pipeline: beam.Pipeline, source: ModelSource, contract: Contract, shards: list[Shard], *, database: str,
    max_line_bytes: int, chunk_rows: int,
) -> beam.PCollection:  # fmt: skip
    """Add the batch job's stages to ``pipeline`` (``contract``: the source's); the result is each written input's
    summary."""
    handler = ModelfnHandler(source, max_batch_size=1)  # each element is already a chunk: one call each
    reader = beam.ParDo(_ReadRows(source, max_line_bytes, chunk_rows)).with_outputs(_ReadRows.MARKERS, main="rows")
    # The inputs spread over the workers before they are read (parsing is half the work), their
    # chunks again after: one large file is predicted by every worker, not by the one that read it.
    read = pipeline | "Inputs" >> beam.Create(shards) | "SpreadInputs" >> beam.Reshuffle() | "ReadRows" >> reader
    spread = read.rows | "SpreadChunks" >> beam.Reshuffle()
    results = spread | "Predict" >> RunInference(handler) | "Key" >> beam.Map(_keyed)
    return (
        (results, read[_ReadRows.MARKERS])
        | "Together" >> beam.Flatten()
        | "ByInput" >> beam.GroupByKey()
        | "Write" >> beam.ParDo(_WriteShard({s.index: s for s in shards}, contract.name, contract.version, database))
    )


def run(
    source: ModelSource,
    inputs: Sequence[tuple[Location, str]],
    output: str,
    *,
    database: str = "",
    max_line_bytes: int = 4 << 20,
    max_batch_size: int | None = None,
    options: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Run the batch job on Beam (``options``: Beam's own flags, ``--runner=DataflowRunner ...``).

    Returns the summaries: those written, then those of inputs already done (``duplicate: true``).
    """
    model = source.load()  # verified here, before any worker starts: a bad artifact stops the job now
    contract = model.contract
    shards, done = plan(inputs, output, contract.version)
    if not shards:
        return done
    flags = list(options)
    if not any(flag.startswith("--runner") for flag in flags):
        flags.append(f"--runner={LOCAL_RUNNER}")
    if max_batch_size is None:
        max_batch_size = contract.batching.max_batch_size if contract.batching is not None else DEFAULT_BATCH_ROWS
    with beam.Pipeline(options=PipelineOptions(flags)) as pipeline:
        build(pipeline, source, contract, shards, database=database, max_line_bytes=max_line_bytes,
              chunk_rows=max_batch_size)  # fmt: skip
    # Read back from the store: the workers may be other processes or machines.
    written = [s for s in (read_summary(shard.outputs().summary) for shard in shards) if s is not None]
    log.info("beam batch: %d inputs written, %d already done", len(shards), len(done))
    return sorted(written, key=lambda s: s["input"]) + done
