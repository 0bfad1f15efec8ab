"""Rows through a model, a chunk at a time: what every batch engine runs, so all answer alike.

The single-machine job (:mod:`modelfn.batch.job`), Beam's ``RunInference`` (:mod:`modelfn.beam`)
and Spark's ``predict_batch_udf`` (:mod:`modelfn.spark`) all call :class:`ChunkPredictor`: the
contract's input checks, its hooks and its predictor, in the same order, with the same error for
the same bad row. The results are encoded here too, so a prediction line is byte for byte the
same whichever engine wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from modelfn.batch.formats import BadRow, Row
from modelfn.errors import ModelfnError
from modelfn.runtime.model import LoadedModel
from modelfn.tensors import named_inputs, to_json_value

#: How a row reaches the model: ``jsonl`` rows are payloads (``POST /predict`` bodies with a
#: pre-processing hook, ``{input name: one row}`` without); ``csv`` and ``npy`` rows are arrays
#: that fill the model's one input.
PAYLOAD_FORMATS = ("jsonl",)


class ChunkPredictor:
    """Predicts chunks of rows with one loaded model; safe to share between threads."""

    def __init__(self, model: LoadedModel, *, summary_per_call: bool = False) -> None:
        self.model = model
        #: Write the model's drift summary after every :meth:`outcomes` (``MODELFN_MONITOR_STORE``): for the
        #: engines' workers (Beam, Spark), which may end without running exit handlers.
        self.summary_per_call = summary_per_call and model.monitor is not None

    def predict_chunk(self, chunk: Sequence[Row | BadRow], fmt: str) -> list[tuple[int, Any]]:
        """``(row number, prediction or BadRow)`` for each row of the chunk, in order.

        One inference call for the rows that pass the checks; when it fails, each row runs alone,
        so one bad row becomes one error row and the rest are still predicted. Row numbers need
        not be unique (a Beam batch mixes rows of several files).
        """
        return [(row.number, outcome) for row, outcome in zip(chunk, self.outcomes(chunk, fmt), strict=True)]

    def outcomes(self, chunk: Sequence[Row | BadRow], fmt: str) -> list[Any]:
        """The prediction (or :class:`BadRow`) of each row of ``chunk``, in order.

        ``fmt`` ``tensors``: each row's value is already ``{input name: array with its batch
        dimension}`` (an Open Inference Protocol request, decoded), and its outcome the output arrays.
        """
        results = self._outcomes(chunk, fmt)
        if self.summary_per_call:
            self.model.monitor.flush()
        return results

    def _outcomes(self, chunk: Sequence[Row | BadRow], fmt: str) -> list[Any]:
        results: list[Any] = [None] * len(chunk)
        ready: list[tuple[int, Row, dict[str, np.ndarray]]] = []
        for position, row in enumerate(chunk):
            if isinstance(row, BadRow):
                results[position] = row
                continue
            try:
                inputs = self._inputs(row, fmt)
                self.model.check_inputs(inputs)
            except ModelfnError as exc:
                results[position] = BadRow(row.number, public_message(exc))
                continue
            ready.append((position, row, inputs))
        for position, outcome in self._infer(ready, fmt):
            results[position] = outcome
        return results

    def _inputs(self, row: Row, fmt: str) -> dict[str, np.ndarray]:
        if fmt == "tensors":
            return row.value
        contract = self.model.contract
        if contract.table is not None and fmt in ("csv", "jsonl") and self.model.hooks.pre is None:
            from modelfn.table import columns_of_rows  # a row keyed by column, from the header or the line

            return columns_of_rows(contract, [row.value], f"line {row.number}", label="the row")
        if fmt not in PAYLOAD_FORMATS:  # CSV and NumPy rows fill the one input
            return {self.model.contract.inputs[0].name: np.asarray(row.value)[np.newaxis, ...]}
        if self.model.hooks.pre is not None or self.model.embedder is not None:  # a hook's or an encoder's payload
            return self.model.preprocess(row.value)
        values = named_inputs(self.model.contract, row.value, f"line {row.number}")
        return {name: array[np.newaxis, ...] for name, array in values.items()}

    def _infer(self, ready: list[tuple[int, Row, dict[str, np.ndarray]]], fmt: str) -> list[tuple[int, Any]]:
        if not ready:
            return []
        names = list(ready[0][2])
        counts = [len(inputs[names[0]]) if names else 0 for _, _, inputs in ready]
        try:
            if len(ready) == 1:
                batch = ready[0][2]
            elif any(list(inputs) != names for _, _, inputs in ready):
                raise _RunAlone()
            else:
                batch = {name: np.concatenate([inputs[name] for _, _, inputs in ready]) for name in names}
            outputs = self.model.infer(batch)
        except (ModelfnError, _RunAlone) as exc:
            if len(ready) == 1:
                position, row, _ = ready[0]
                assert isinstance(exc, ModelfnError)
                return [(position, BadRow(row.number, public_message(exc)))]
            if isinstance(exc, _RunAlone):
                return [outcome for item in ready for outcome in self._infer([item], fmt)]
            # A row the model refused (an unknown category): halves, so that one bad row in a chunk
            # of n costs about 2 log2(n) calls instead of n.
            half = len(ready) // 2
            return self._infer(ready[:half], fmt) + self._infer(ready[half:], fmt)
        results: list[tuple[int, Any]] = []
        offset = 0
        for (position, row, inputs), count in zip(ready, counts, strict=True):
            mine = {name: array[offset : offset + count] for name, array in outputs.items()}
            offset += count
            results.append((position, self._answer(row, mine, fmt, inputs)))
        return results

    def _answer(self, row: Row, outputs: dict[str, np.ndarray], fmt: str, inputs: dict[str, np.ndarray]) -> Any:
        if fmt == "tensors":
            return outputs
        if fmt in PAYLOAD_FORMATS and (self.model.hooks.post is not None or self.model.embedder is not None):
            try:
                return self.model.postprocess(outputs, row.value, inputs)
            except ModelfnError as exc:
                return BadRow(row.number, public_message(exc))
        # One input row -> its own output rows, without the batch dimension.
        answer = {}
        for name, array in outputs.items():
            value = to_json_value(array)  # dtypes orjson writes natively (ONNX's longlong is not one)
            answer[name] = value[0] if len(array) == 1 else value
        return answer


class _RunAlone(Exception):
    """The rows of a chunk name different inputs (tensors rows): they cannot share one call."""


def prediction_json(outcome: Any) -> bytes:
    """A prediction as JSON, serialized once: the same bytes go to the file and the database."""
    return orjson.dumps(outcome, option=orjson.OPT_SERIALIZE_NUMPY)


def prediction_line(number: int, prediction: bytes) -> bytes:
    """One line of ``<input>.predictions.jsonl``."""
    return b'{"row":%d,"prediction":%b}\n' % (number, prediction)


def error_line(number: int | None, error: str) -> bytes:
    """One line of ``<input>.errors.jsonl``; ``number`` is None for an error of the whole file."""
    return orjson.dumps({"row": number, "error": error}, option=orjson.OPT_APPEND_NEWLINE)


def public_message(error: ModelfnError) -> str:
    """What a row's error says: the message itself, or its public form when it could leak internals."""
    return error.message if error.public else error.public_message
