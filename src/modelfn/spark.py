"""Batch prediction on Spark (Dataproc, EMR, Databricks, or locally) with a modelfn model.

``predict_udf(source)`` is a column function built on ``pyspark.ml.functions.predict_batch_udf``::

    from modelfn.spark import predict_udf

    predict = predict_udf("gs://bucket/models/digits@prod", folder="functions/digits")
    scored = requests.withColumn("result", predict("body"))          # a string column of POST /predict bodies
    scored.select("result.prediction", "result.error")

Each executor's Python worker loads the model once (Spark caches the predict function) through the
path a deployed function takes: digest check, predictor, hooks, warm-up; the driver loads it first,
so a corrupt artifact fails the job before a row is read. The result is a struct of two strings:
``prediction``, the answer as JSON (``from_json`` reads it), or ``error``, why that row was not
predicted (the function's 4xx words); a bad row never fails the task.

Two kinds of input column:

- ``kind="json"``: strings, each a ``POST /predict`` body (with hooks), or ``{input name: one row}``;
- ``kind="csv"``: strings, each a line of numbers filling the model's one input, checked as
  ``modelfn batch`` checks a ``.csv`` line (``spark.read.text``; drop a header line first);
- ``kind="tensor"``: arrays of numbers, each one row of the model's one input, flattened (a column
  of a Parquet table). Spark stacks each batch before the model sees it, so every array must have
  the row's length: filter on ``F.size(col)`` first, or read the rows as ``csv``.

With ``numbered=True`` a second column gives each row's number, which error messages name as
``modelfn batch`` names line numbers. Needs ``pip install 'modelfn[spark]'`` and Spark 3.4 or later.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from modelfn.batch.formats import BadRow, Row, array_row, csv_line, json_row, row_spec
from modelfn.batch.predict import ChunkPredictor, prediction_json
from modelfn.errors import ContractError
from modelfn.offline import ModelSource

KINDS = ("json", "csv", "tensor")
DEFAULT_BATCH_ROWS = 1024


def predict_udf(
    source: str,
    *,
    folder: str | None = None,
    member: str | None = None,
    kind: str = "json",
    numbered: bool = False,
    batch_size: int | None = None,
) -> Any:
    """A Spark column function predicting with the model at ``source`` (a folder or registry reference).

    ``numbered``: the function takes a second column, each row's number (for error messages);
    ``batch_size``: rows per inference call (default: the contract's batching block, else 1024).
    """
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import StringType, StructField, StructType

    if kind not in KINDS:
        raise ContractError(f"kind={kind!r}: use one of {', '.join(KINDS)}")
    model_source = ModelSource.of(source, folder=folder, member=member)
    contract = model_source.load().contract  # verified on the driver before any executor reads a row
    shapes: dict[int, list[int]] | None = None
    if kind == "tensor":
        spec = row_spec(contract, "npy")
        shapes = {0: [math.prod(spec.shape[1:])]}  # per row, flattened; Spark adds the batch dimension
    if batch_size is None:
        batch_size = contract.batching.max_batch_size if contract.batching is not None else DEFAULT_BATCH_ROWS
    return predict_batch_udf(
        _make_predict_fn(model_source, kind, numbered=numbered),
        return_type=StructType([StructField("prediction", StringType()), StructField("error", StringType())]),
        batch_size=batch_size,
        input_tensor_shapes=shapes,
    )


def _make_predict_fn(
    source: ModelSource, kind: str, *, numbered: bool
) -> Callable[[], Callable[..., dict[str, np.ndarray]]]:
    def make_predict_fn() -> Callable[..., dict[str, np.ndarray]]:
        predictor = ChunkPredictor(source.load())
        reader = {"json": _json_rows, "csv": _csv_rows(predictor), "tensor": _tensor_rows(predictor)}[kind]
        fmt = "jsonl" if kind == "json" else "npy"

        def predict_numbered(values: np.ndarray, numbers: np.ndarray | None) -> dict[str, np.ndarray]:
            outcomes = predictor.outcomes(reader(values, numbers), fmt)
            # Column-oriented: Spark's row-oriented form takes no nulls.
            predictions = np.empty(len(outcomes), dtype=object)
            errors = np.empty(len(outcomes), dtype=object)
            for index, outcome in enumerate(outcomes):
                if isinstance(outcome, BadRow):
                    errors[index] = outcome.error
                else:
                    predictions[index] = prediction_json(outcome).decode()
            return {"prediction": predictions, "error": errors}

        def predict(values: np.ndarray) -> dict[str, np.ndarray]:  # Spark counts the parameters
            return predict_numbered(values, None)

        return predict_numbered if numbered else predict

    return make_predict_fn


def _numbers(count: int, numbers: np.ndarray | None) -> list[int]:
    return list(range(1, count + 1)) if numbers is None else [int(n) for n in numbers]


def _json_rows(values: np.ndarray, numbers: np.ndarray | None) -> list[Row | BadRow]:
    rows: list[Row | BadRow] = []
    for number, text in zip(_numbers(len(values), numbers), values, strict=True):
        rows.append(BadRow(number, "no value (the column is null)") if text is None else json_row(number, text))
    return rows


def _csv_rows(predictor: ChunkPredictor) -> Callable[[np.ndarray, np.ndarray | None], list[Row | BadRow]]:
    spec = row_spec(predictor.model.contract, "csv")

    def read(values: np.ndarray, numbers: np.ndarray | None) -> list[Row | BadRow]:
        rows: list[Row | BadRow] = []
        for number, text in zip(_numbers(len(values), numbers), values, strict=True):
            kind, value = ("bad", "no value (the column is null)") if text is None else csv_line(text.encode(), spec)
            if kind == "blank":
                value = "an empty line"
            rows.append(Row(number, value) if kind == "row" else BadRow(number, value))
        return rows

    return read


def _tensor_rows(predictor: ChunkPredictor) -> Callable[[np.ndarray, np.ndarray | None], list[Row | BadRow]]:
    spec = row_spec(predictor.model.contract, "npy")

    def read(values: np.ndarray, numbers: np.ndarray | None) -> list[Row | BadRow]:
        return [array_row(n, row, spec) for n, row in zip(_numbers(len(values), numbers), values, strict=True)]

    return read
