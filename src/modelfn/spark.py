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
  the row's length: filter on ``F.size(col)`` first, or read the rows as ``csv``;
- ``kind="columns"``, for a tabular contract (``table:``): one Spark column per contract column, in
  the contract's order. ``predict()`` with no column picks them by name::

      predict = predict_udf("functions/churn", kind="columns")
      scored = spark.read.csv("customers.csv", header=True).withColumn("result", predict())

  Typed columns (Parquet, ``inferSchema``) are used as they are; string cells in a number column
  are read as ``modelfn batch`` reads a CSV cell, so a CSV read with every column a string gives the
  batch job's results and error words. A null (or a NaN) is a missing value.

With ``numbered=True`` a second column gives each row's number, which error messages name as
``modelfn batch`` names line numbers. Needs ``pip install 'modelfn[spark]'`` and Spark 3.4 or later.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from modelfn.batch.formats import BadRow, Row, array_row, cell_value, csv_line, json_row, row_spec
from modelfn.batch.predict import ChunkPredictor, prediction_json
from modelfn.contract import TensorSpec
from modelfn.errors import ContractError, InvalidInput
from modelfn.offline import ModelSource

KINDS = ("json", "csv", "tensor", "columns")
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

    ``numbered``: the function takes one more column, last, each row's number (for error messages);
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
    if kind == "columns" and contract.table is None:
        raise ContractError(f"kind='columns' is for a tabular contract (table:); {contract.name} takes tensors")
    if batch_size is None:
        batch_size = contract.batching.max_batch_size if contract.batching is not None else DEFAULT_BATCH_ROWS
    udf = predict_batch_udf(
        _make_predict_fn(model_source, kind, numbered=numbered),
        return_type=StructType([StructField("prediction", StringType()), StructField("error", StringType())]),
        batch_size=batch_size,
        input_tensor_shapes=shapes,
    )
    if kind != "columns":
        return udf
    names = [spec.name for spec in contract.inputs]

    def predict_columns(*columns: Any) -> Any:
        """The contract's columns, by name, unless given (then in the contract's order, numbers last)."""
        expected = names + (["the row numbers"] if numbered else [])
        if (columns or numbered) and len(columns) != len(expected):
            raise ContractError(f"predict() takes {len(expected)} columns, {expected}; it was given {len(columns)}")
        return udf(*(columns or names))

    return predict_columns


def _make_predict_fn(
    source: ModelSource, kind: str, *, numbered: bool
) -> Callable[[], Callable[..., dict[str, np.ndarray]]]:
    def make_predict_fn() -> Callable[..., dict[str, np.ndarray]]:
        predictor = ChunkPredictor(source.load(), summary_per_call=True)
        if kind == "columns":
            return _predict_columns(predictor, numbered=numbered)
        # Only this kind's reader: the csv and tensor ones check that the model has one input.
        reader = _json_rows if kind == "json" else {"csv": _csv_rows, "tensor": _tensor_rows}[kind](predictor)
        fmt = "jsonl" if kind == "json" else "npy"

        def predict_numbered(values: np.ndarray, numbers: np.ndarray | None) -> dict[str, np.ndarray]:
            return _columns_of(predictor.outcomes(reader(values, numbers), fmt))

        def predict(values: np.ndarray) -> dict[str, np.ndarray]:  # Spark counts the parameters
            return predict_numbered(values, None)

        return predict_numbered if numbered else predict

    return make_predict_fn


def _columns_of(outcomes: list[Any]) -> dict[str, np.ndarray]:
    """Column-oriented results: Spark's row-oriented form takes no nulls."""
    predictions = np.empty(len(outcomes), dtype=object)
    errors = np.empty(len(outcomes), dtype=object)
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, BadRow):
            errors[index] = outcome.error
        else:
            predictions[index] = prediction_json(outcome).decode()
    return {"prediction": predictions, "error": errors}


def _predict_columns(predictor: ChunkPredictor, *, numbered: bool) -> Callable[..., dict[str, np.ndarray]]:
    """Rows ``{column: value}`` from one array per column, predicted as ``modelfn batch`` predicts CSV rows."""
    specs = predictor.model.contract.inputs

    def predict(*arrays: np.ndarray) -> dict[str, np.ndarray]:
        columns, numbers = (arrays[:-1], arrays[-1]) if numbered else (arrays, None)
        rows: list[Row | BadRow] = []
        for index, number in enumerate(_numbers(len(columns[0]), numbers)):
            try:
                cells = {spec.name: _cell(column[index], spec) for spec, column in zip(specs, columns, strict=True)}
                rows.append(Row(number, cells))
            except InvalidInput as exc:
                rows.append(BadRow(number, exc.message))
        return _columns_of(predictor.outcomes(rows, "csv"))

    # Spark counts the function's parameters to decide how many columns it takes.
    count = len(specs) + numbered
    predict.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(f"column_{index}", inspect.Parameter.POSITIONAL_ONLY) for index in range(count)]
    )
    return predict


def _cell(value: Any, spec: TensorSpec) -> Any:
    """One Spark value as the JSON value a row would carry: numbers as numbers, strings read as CSV cells."""
    if value is None:
        return None
    if isinstance(value, str):
        return cell_value(value, spec)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None  # pandas turns a null in a number column into NaN
        if spec.datatype.startswith(("INT", "UINT")) and value.is_integer():
            return int(value)  # an integer column with a null arrives as floats
    return value


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
