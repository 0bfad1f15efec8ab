"""The categories a fitted scikit-learn pipeline knows, by the name of the column they come from.

A ``OneHotEncoder`` or ``OrdinalEncoder`` fitted with ``handle_unknown="error"`` refuses a category it
never saw, and scikit-learn then names the column by its position inside one transformer ("unknown
categories ['gold'] in column 0"). Read once at load, the same knowledge lets modelfn refuse the value
before the model runs, naming the column as the caller wrote it. An encoder that ignores unknown
categories (``handle_unknown="ignore"`` or ``"use_encoded_value"``) is left alone: such a value is
served as the model was trained to serve it.

Only what can be read for certain is used: ``Pipeline`` steps, a ``ColumnTransformer``'s fitted
transformers selected by column names or positions, and an encoder directly on the frame. Anything
else (a callable selector, a custom transformer) adds nothing, and scikit-learn's own check still
answers 400.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ENCODERS = ("OneHotEncoder", "OrdinalEncoder")


def known_categories(estimator: Any, columns: Sequence[str]) -> dict[str, frozenset[Any]]:
    """``{column: categories}`` for every column an unknown-refusing encoder reads straight from the frame."""
    found: dict[str, frozenset[Any]] = {}
    _walk(estimator, list(columns), found)
    return found


def _walk(estimator: Any, columns: list[str] | None, found: dict[str, frozenset[Any]]) -> None:
    """``columns``: the names of the columns ``estimator`` receives, or None once they are transformed."""
    kind = type(estimator).__name__
    if kind == "Pipeline":
        steps = [step for _, step in estimator.steps if step not in (None, "passthrough")]
        if steps:
            _walk(steps[0], columns, found)  # later steps see transformed features, not the frame's columns
            leading = _imputers_only(steps)
            if leading is not None and leading < len(steps):
                _walk(steps[leading], columns, found)  # an encoder after imputers reads the same columns
    elif kind == "ColumnTransformer" and columns is not None:
        for _, transformer, selected in getattr(estimator, "transformers_", []):
            names = selected_columns(selected, columns)
            if names is not None and transformer not in ("drop", "passthrough"):
                _walk(transformer, names, found)
    elif kind in ENCODERS and columns is not None and getattr(estimator, "handle_unknown", None) == "error":
        categories = getattr(estimator, "categories_", None)
        if categories is not None and len(categories) == len(columns):
            for name, known in zip(columns, categories, strict=True):
                found[name] = frozenset(known.tolist())


def _imputers_only(steps: list[Any]) -> int | None:
    """The index of the first step that is not an imputer, when the steps before it are all imputers."""
    for index, step in enumerate(steps):
        if type(step).__name__ not in ("SimpleImputer",):
            return index if index > 0 else None
    return None


def selected_columns(selected: Any, columns: Sequence[str]) -> list[str] | None:
    """The names a ColumnTransformer entry selects: a name, a position, or a list of either."""
    if isinstance(selected, str | int):
        selected = [selected]
    if hasattr(selected, "tolist"):
        selected = selected.tolist()
    if not isinstance(selected, list):
        return None  # a slice, a callable, a boolean mask: not read here
    names = []
    for item in selected:
        if isinstance(item, bool):
            return None
        if isinstance(item, str) and item in columns:
            names.append(item)
        elif isinstance(item, int) and -len(columns) <= item < len(columns):
            names.append(columns[item])
        else:
            return None
    return names


def selects_columns_by_name(estimator: Any) -> bool:
    """Whether a ``ColumnTransformer`` in the pipeline picks its columns by name: it then takes a DataFrame only."""
    kind = type(estimator).__name__
    if kind == "Pipeline":
        return any(selects_columns_by_name(step) for _, step in estimator.steps)
    if kind == "ColumnTransformer":
        for _, _, selected in getattr(estimator, "transformers", []):
            items = [selected] if isinstance(selected, str) else selected
            if isinstance(items, list) and any(isinstance(item, str) for item in items):
                return True
    return False
