"""A Beam ``ModelHandler`` for a modelfn model: ``RunInference(model_handler("gs://b/models/digits@prod"))``.

Each element is one of:

- a ``POST /predict`` payload (any JSON value): through the contract's hooks, as the function
  answers it; without hooks ``{input name: one row}``, like a line of a ``.jsonl`` batch input;
- an Open Inference Protocol request body (``{"inputs": [{"name", "shape", "datatype", "data"}]}``):
  its tensors straight to the model; the inference is the protocol's response body;
- a NumPy array: one row of the model's one input, like a row of a ``.csv`` or ``.npy`` input;
- a :class:`BatchRow`, a row read from a file; or a :class:`RowChunk`, many of them, whose
  inference is their result lines (what :mod:`modelfn.beam.pipeline` moves: one element per
  chunk, so Beam's cost per element is paid once per chunk of rows, not once per row).

Every element gets a ``PredictionResult`` whose ``inference`` is the answer, or a :class:`RowError`
naming what is wrong with that element: a bad element never fails the bundle. :class:`Predict`
splits the two into a main output and a dead-letter one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from modelfn.batch.formats import BadRow, Row, array_row
from modelfn.batch.predict import ChunkPredictor, error_line, prediction_json, public_message
from modelfn.contract import TensorSpec
from modelfn.errors import ModelfnError
from modelfn.offline import ModelSource

#: Rows per inference call for a model without a batching block: the single-machine job's chunk.
DEFAULT_BATCH_ROWS = 1024
NAMESPACE = "modelfn"


@dataclass(frozen=True)
class RowError:
    """Why one element was not predicted (the same words as the function's 4xx, or a row of errors.jsonl)."""

    error: str


class BatchRow(NamedTuple):
    """A row read from a batch input file: ``key`` says where its result goes, ``fmt`` how to read it."""

    key: Any
    row: Row | BadRow
    fmt: str


class RowChunk:
    """Rows of one input file, predicted together; the inference is ``[(row, line, is_error), ...]``:
    each row's prediction JSON, or its ``errors.jsonl`` line.

    Pickled compactly: the array rows of a ``.csv`` or ``.npy`` chunk travel as one stacked array,
    not as a thousand small ones (Beam pickles every element that crosses a shuffle).
    """

    __slots__ = ("fmt", "key", "rows")

    def __init__(self, key: Any, fmt: str, rows: list[Row | BadRow]) -> None:
        self.key, self.fmt, self.rows = key, fmt, rows

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        good = [row.value for row in self.rows if isinstance(row, Row)]
        if good and all(isinstance(v, np.ndarray) for v in good) and len({(v.shape, v.dtype) for v in good}) == 1:
            numbers = np.array([row.number for row in self.rows], dtype=np.int64)
            bad = [(i, row.error) for i, row in enumerate(self.rows) if isinstance(row, BadRow)]
            return _unpack_chunk, (self.key, self.fmt, numbers, np.stack(good), bad)
        return RowChunk, (self.key, self.fmt, self.rows)


def _unpack_chunk(key: Any, fmt: str, numbers: np.ndarray, stacked: np.ndarray, bad: list) -> RowChunk:
    errors = dict(bad)
    rows: list[Row | BadRow] = []
    taken = 0
    for position, number in enumerate(numbers.tolist()):
        if position in errors:
            rows.append(BadRow(number, errors[position]))
        else:
            rows.append(Row(number, stacked[taken]))
            taken += 1
    return RowChunk(key, fmt, rows)


class ModelfnHandler(ModelHandler[Any, PredictionResult, ChunkPredictor]):
    """Loads the model once per worker process (shared by its threads) and predicts batches of elements."""

    def __init__(self, source: ModelSource, *, max_batch_size: int | None = None) -> None:
        contract = source.contract()  # read where the pipeline is built: a wrong reference fails there
        batching = contract.batching
        if max_batch_size is None:
            max_batch_size = batching.max_batch_size if batching is not None else DEFAULT_BATCH_ROWS
        super().__init__(min_batch_size=1, max_batch_size=max_batch_size)
        self.source = source
        self.model_id = f"{contract.name}/{contract.version}"
        self._max_tensor_elements = 0
        self._spec: TensorSpec | None = None  # the one input array rows fill, found on first use

    def load_model(self) -> ChunkPredictor:
        from modelfn.settings import Settings

        self._max_tensor_elements = Settings.from_env().max_tensor_elements
        return ChunkPredictor(self.source.load(), summary_per_call=True)

    def run_inference(
        self, batch: Sequence[Any], model: ChunkPredictor, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        groups: dict[str, list[tuple[int, Row | BadRow]]] = {}
        inferences: list[Any] = [None] * len(batch)
        for position, element in enumerate(batch):
            if isinstance(element, RowChunk):
                inferences[position] = self._chunk(element, model)
                continue
            fmt, row = self._row(element, position, model)
            groups.setdefault(fmt, []).append((position, row))
        for fmt, members in groups.items():
            outcomes = model.outcomes([row for _, row in members], fmt)
            for (position, _), outcome in zip(members, outcomes, strict=True):
                inferences[position] = self._inference(outcome, fmt, model)
        rows = sum(len(e.rows) if isinstance(e, RowChunk) else 1 for e in batch)
        failed = sum(isinstance(each, RowError) for each in inferences)
        failed += sum(is_error for each in inferences if isinstance(each, list) for *_, is_error in each)
        Metrics.counter(NAMESPACE, "rows_failed").inc(failed)
        Metrics.counter(NAMESPACE, "rows_predicted").inc(rows - failed)
        return [PredictionResult(e, i, self.model_id) for e, i in zip(batch, inferences, strict=True)]

    def _chunk(self, chunk: RowChunk, model: ChunkPredictor) -> list[tuple[int, bytes, bool]]:
        """A chunk's result lines, serialized here so that what travels on is bytes."""
        lines = []
        for row, outcome in zip(chunk.rows, model.outcomes(chunk.rows, chunk.fmt), strict=True):
            if isinstance(outcome, BadRow):
                lines.append((row.number, error_line(row.number, outcome.error), True))
            else:
                lines.append((row.number, prediction_json(outcome), False))
        return lines

    def _row(self, element: Any, position: int, model: ChunkPredictor) -> tuple[str, Row | BadRow]:
        if isinstance(element, BatchRow):
            return element.fmt, element.row
        if isinstance(element, np.ndarray):
            if self._spec is None:
                from modelfn.batch.formats import row_spec

                try:
                    self._spec = row_spec(model.model.contract, "npy")
                except ModelfnError as exc:
                    return "npy", BadRow(position + 1, exc.message)
            return "npy", array_row(position + 1, element, self._spec)
        if isinstance(element, dict) and isinstance(element.get("inputs"), list):
            from modelfn.protocols.oip import decode_inputs

            try:
                tensors = decode_inputs(element["inputs"], self._max_tensor_elements or 1 << 24)
            except ModelfnError as exc:
                return "tensors", BadRow(position + 1, public_message(exc))
            return "tensors", Row(position + 1, tensors)
        return "jsonl", Row(position + 1, element)

    def _inference(self, outcome: Any, fmt: str, model: ChunkPredictor) -> Any:
        if isinstance(outcome, BadRow):
            return RowError(outcome.error)
        if fmt != "tensors":
            return outcome
        from modelfn.protocols.oip import encode_output

        contract = model.model.contract
        return {
            "model_name": contract.name,
            "model_version": contract.version,
            "outputs": [encode_output(name, array) for name, array in outcome.items()],
        }

    def get_metrics_namespace(self) -> str:
        return NAMESPACE

    def share_model_across_processes(self) -> bool:
        return False  # one copy per worker process, shared by its threads (Beam's default sharing)


def model_handler(
    source: str, *, folder: str | None = None, member: str | None = None, max_batch_size: int | None = None
) -> ModelfnHandler:
    """The handler of a function folder or a registry reference (its alias resolved now, once).

    ``folder``: the function folder with the hooks of a registry model; ``member``: the model of a
    several-model folder; ``max_batch_size``: rows per call (default: the contract's batching block).
    """
    return ModelfnHandler(ModelSource.of(source, folder=folder, member=member), max_batch_size=max_batch_size)
