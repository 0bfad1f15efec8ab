"""The columns of a scikit-learn pipeline fitted on a DataFrame, for ``modelfn init``.

scikit-learn records the columns' names (``feature_names_in_``) but not their types. A column an
encoder reads has the type of the categories it was fitted on; any other column's type comes from an
example row the user gives (``--example row.json``), which also becomes the contract's ``example``: a
real row, not zeros. A column whose type neither tells is a :class:`ContractError` asking for the row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelfn.errors import ContractError


def fitted_columns(estimator: Any) -> list[str] | None:
    """The column names the estimator was fitted on, or None (fitted on an array)."""
    names = getattr(estimator, "feature_names_in_", None)
    return None if names is None else [str(name) for name in names]


def read_example(path: Path) -> dict[str, Any]:
    """An example row: a JSON object keyed by column (``{"rows": [row, ...]}``: the first row)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ContractError(f"--example {path}: not a readable JSON file: {exc}") from None
    if isinstance(value, dict) and isinstance(value.get("rows"), list) and value["rows"]:
        value = value["rows"][0]
    if not isinstance(value, dict):
        raise ContractError(f"--example {path}: a row is a JSON object keyed by column, as POST /predict takes it")
    return value


def column_types(estimator: Any, columns: list[str], example: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Each column's ``(name, datatype)``, typed by its encoder's categories or the example row."""
    from modelfn.runtime.predictors.categories import known_categories

    if example is not None:
        unknown = sorted(set(example) - set(columns))
        if unknown:
            raise ContractError(f"--example names {unknown}, which the model was not fitted on; it takes {columns}")
    known = known_categories(estimator, columns)
    tensors: list[tuple[str, str]] = []
    untyped: list[str] = []
    for name in columns:
        datatype = _datatype_of_value(example[name]) if example is not None and name in example else None
        if datatype is None and name in known:
            datatype = _datatype_of_categories(known[name])
        if datatype is None:
            untyped.append(name)
        tensors.append((name, datatype or ""))
    nulls = [name for name in untyped if example is not None and name in example]
    if nulls:
        raise ContractError(f"--example: {nulls} are null; give each a value, its type comes from it")
    if untyped:
        raise ContractError(
            f"the model does not record the types of the columns {untyped}; give a row it takes with "
            '--example row.json (for example {"' + columns[0] + "\": ...}), which also becomes the contract's example"
        )
    return tensors


IMPUTERS = ("SimpleImputer", "KNNImputer", "IterativeImputer")


def imputed_columns(estimator: Any, columns: list[str]) -> set[str]:
    """The columns whose first step in the pipeline is an imputer: a missing value is expected there.

    Read as :mod:`modelfn.runtime.predictors.categories` reads encoders: a ``ColumnTransformer``'s
    entries selected by name or position, each an imputer or a ``Pipeline`` that starts with one.
    """
    from modelfn.runtime.predictors.categories import selected_columns

    if type(estimator).__name__ == "Pipeline":
        steps = [step for _, step in estimator.steps if step not in (None, "passthrough")]
        return imputed_columns(steps[0], columns) if steps else set()
    if type(estimator).__name__ in IMPUTERS:
        return set(columns)
    found: set[str] = set()
    if type(estimator).__name__ == "ColumnTransformer":
        for _, transformer, selected in getattr(estimator, "transformers_", []):
            names = selected_columns(selected, columns)
            if names is not None and transformer not in ("drop", "passthrough"):
                found |= imputed_columns(transformer, names)
    return found


def _datatype_of_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FP64"
    if isinstance(value, str):
        return "BYTES"
    return None  # null: the type must come from elsewhere


def _datatype_of_categories(categories: frozenset[Any]) -> str | None:
    kinds = {_datatype_of_value(value) for value in categories if value == value}  # NaN is no category
    if kinds == {"BYTES"}:
        return "BYTES"
    if kinds <= {"INT64", "BOOL"} and kinds:
        return "INT64"
    if kinds <= {"INT64", "FP64"} and kinds:
        return "FP64"
    return None
