"""What drift is measured on: the model's inputs, as its pre hook made them, and its outputs, as features.

One value per row (the first dimension) and feature:

- a numeric tensor with at most :data:`MAX_ELEMENTS` values a row: each value is a feature
  (``pixels[12]``; the tensor's name alone when a row holds one value);
- a larger numeric tensor (an image): its row's mean and standard deviation (``image.mean``, ``image.std``);
- a string column of a table: its values are categories (``plan``);
- any other string tensor (a prompt): its length in characters (``text.length``);
- an output of integers or strings with one value a row (a predicted class): categories
  (``label``); a numeric output: as an input is.

Features of outputs are named ``output:<name>`` so that a report can tell the answer from the question.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from modelfn.contract import Contract

#: A row of at most this many values gives a feature per value; a larger one, its mean and deviation.
MAX_ELEMENTS = 64


class Features(NamedTuple):
    #: The numeric features' names, and their values: one row per row, one column per name.
    names: tuple[str, ...]
    matrix: np.ndarray
    #: Feature name -> one category (a string) per row.
    categorical: dict[str, list[str]]

    @classmethod
    def of(cls, numeric: Mapping[str, np.ndarray], categorical: dict[str, list[str]]) -> Features:
        """From one array of values per numeric feature."""
        rows = len(next(iter(numeric.values()))) if numeric else 0
        matrix = np.column_stack([np.asarray(v, dtype=np.float64) for v in numeric.values()]) if numeric else (
            np.zeros((rows, 0)))  # fmt: skip
        return cls(tuple(numeric), matrix, categorical)

    @property
    def rows(self) -> int:
        return max([len(self.matrix)] + [len(v) for v in self.categorical.values()])


def features(
    contract: Contract,
    inputs: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
    hook: Callable[[Mapping[str, np.ndarray]], Mapping[str, Any]] | None = None,
) -> Features:
    """The features of one model call's rows (the numeric ones as one matrix: a call costs a few array operations).

    ``hook``: the contract's ``monitoring.features``, whose features replace the inputs' own.
    """
    names: list[str] = []
    blocks: list[np.ndarray] = []
    categorical: dict[str, list[str]] = {}
    table = contract.table is not None
    if hook is not None:
        count = len(next(iter(inputs.values()))) if inputs else 0
        for name, values in hook(inputs).items():
            array = np.asarray(values)
            if array.shape != (count,):
                raise ValueError(f"monitoring.features gave {name!r} the shape {array.shape}; one value a row: {count}")
            _add(str(name), array, names, blocks, categorical, strings_are_categories=True)
    else:
        for name, array in inputs.items():
            _add(name, np.asarray(array), names, blocks, categorical, strings_are_categories=table)
    for name, array in outputs.items():
        value = np.asarray(array)
        rows = _rows(value)
        if value.dtype.kind in "iub" and rows.shape[1] == 1:  # a class per row
            categorical[f"output:{name}"] = [str(v) for v in rows[:, 0].tolist()]
        else:
            _add(f"output:{name}", value, names, blocks, categorical, strings_are_categories=True)
    count = max([len(b) for b in blocks] + [len(v) for v in categorical.values()] + [0])
    matrix = np.hstack(blocks) if blocks else np.zeros((count, 0))
    return Features(tuple(names), matrix, categorical)


def _rows(array: np.ndarray) -> np.ndarray:
    """``array`` as rows of values: ``(rows, values per row)``."""
    if array.ndim == 0:
        return array.reshape(1, 1)
    return array.reshape(array.shape[0], -1)


@functools.lru_cache(maxsize=256)
def _element_names(name: str, width: int) -> tuple[str, ...]:
    return (name,) if width == 1 else tuple(f"{name}[{index}]" for index in range(width))


def _add(name: str, array: np.ndarray, names: list[str], blocks: list[np.ndarray], categorical: dict[str, list[str]],
         *, strings_are_categories: bool) -> None:  # fmt: skip
    rows = _rows(array)
    if array.dtype.kind in "OSU":
        texts = [[_text(v) for v in row] for row in rows.tolist()]
        if strings_are_categories and rows.shape[1] == 1:
            categorical[name] = [row[0] for row in texts]
        else:
            names.append(f"{name}.length")
            blocks.append(np.array([[sum(len(t) for t in row)] for row in texts], dtype=np.float64))
        return
    values = rows.astype(np.float64, copy=False)
    if values.shape[1] <= MAX_ELEMENTS:
        names.extend(_element_names(name, values.shape[1]))
        blocks.append(values)
    else:
        names.extend((f"{name}.mean", f"{name}.std"))
        blocks.append(np.column_stack([values.mean(axis=1), values.std(axis=1)]))


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def feature_hook(folder: str | Path, contract: Contract) -> Callable[..., Any] | None:
    """The contract's ``monitoring.features`` hook, imported from ``folder``, or None."""
    ref = contract.monitoring.features
    if ref is None:
        return None
    from modelfn.runtime.hooks import hook_namespace, load_hook

    return load_hook(folder, ref, "monitoring.features", namespace=hook_namespace(contract.name, contract.version))
