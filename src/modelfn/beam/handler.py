"""A Beam ``ModelHandler`` for a modelfn model: ``RunInference(model_handler("gs://b/models/digits@prod"))``.

Each element is one of:

- a ``POST /predict`` payload (any JSON value): through the contract's hooks, as the function
  answers it; without hooks ``{input name: one row}``, like a line of a ``.jsonl`` batch input;
- an Open Inference Protocol request body (``{"inputs": [{"name", "shape", "datatype", "data"}]}``):
  its tensors straight to the model; the inference is the protocol's response body;
- a NumPy array: one row of the model's one input, like a row of a ``.csv`` or ``.npy`` input;
- a :class:`BatchRow` (what :mod:`modelfn.beam.pipeline` reads from files).

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
from modelfn.batch.predict import ChunkPredictor, public_message
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
        return ChunkPredictor(self.source.load())

    def run_inference(
        self, batch: Sequence[Any], model: ChunkPredictor, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        groups: dict[str, list[tuple[int, Row | BadRow]]] = {}
        for position, element in enumerate(batch):
            fmt, row = self._row(element, position, model)
            groups.setdefault(fmt, []).append((position, row))
        inferences: list[Any] = [None] * len(batch)
        for fmt, members in groups.items():
            outcomes = model.outcomes([row for _, row in members], fmt)
            for (position, _), outcome in zip(members, outcomes, strict=True):
                inferences[position] = self._inference(outcome, fmt, model)
        failed = sum(isinstance(each, RowError) for each in inferences)
        Metrics.counter(NAMESPACE, "rows_failed").inc(failed)
        Metrics.counter(NAMESPACE, "rows_predicted").inc(len(batch) - failed)
        return [PredictionResult(e, i, self.model_id) for e, i in zip(batch, inferences, strict=True)]

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
