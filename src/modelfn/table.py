"""Rows as people write them, and the columns a tabular model takes (see :class:`modelfn.contract.Table`).

A tabular contract declares each column as an input of shape ``[-1]`` or ``[-1, 1]``. Every route
reaches the model through these helpers:

- ``POST /predict`` and the batch jobs send rows: ``{"tenure": 12, "plan": "pro"}`` or
  ``{"rows": [...]}``; :func:`columns_from_rows` turns them into one array per column, and a wrong
  type, a missing or an unknown column is a 400 that names the column and the row;
- the Open Inference Protocol sends a column per input, as MLServer's pandas codec does (shape
  ``[rows, 1]``) or as a plain client does (``[rows]``); :func:`normalize_oip_inputs` gives each
  the contract's own rank before the usual checks;
- the model then takes them as the contract says (:func:`dataframe` for a scikit-learn pipeline).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from modelfn.errors import InvalidInput
from modelfn.tensors import to_array

if TYPE_CHECKING:
    import numpy as np


class ColumnSpec(Protocol):
    """A column as these helpers read it: a contract's TensorSpec, or the edge runner's."""

    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> str: ...
    @property
    def shape(self) -> Sequence[int]: ...


class TableSpec(Protocol):
    @property
    def nullable(self) -> Sequence[str]: ...
    @property
    def categories(self) -> dict[str, list[Any]]: ...


class Tabular(Protocol):
    """What of a contract these helpers read: the full :class:`modelfn.contract.Contract`, or the
    edge runner's model (which carries no contract module)."""

    @property
    def inputs(self) -> Sequence[ColumnSpec]: ...
    @property
    def table(self) -> TableSpec | None: ...


#: The key of ``{"rows": [...]}``, unless the table has a column of that name.
ROWS_KEY = "rows"


def columns_from_rows(contract: Tabular, payload: Any, where: str = "body") -> dict[str, np.ndarray]:
    """One row (an object keyed by column) or ``{"rows": [row, ...]}`` -> ``{column: array}``.

    Each array has the column's declared shape, with the rows as its first dimension.
    """
    names = [spec.name for spec in contract.inputs]
    if isinstance(payload, dict) and ROWS_KEY in payload and ROWS_KEY not in names:
        rows = payload[ROWS_KEY]
        if not isinstance(rows, list) or not rows:
            raise InvalidInput(f"{where}: `rows` must be a non-empty list of objects keyed by {names}")
        if len(payload) > 1:
            extra = sorted(str(key)[:100] for key in payload if key != ROWS_KEY)
            raise InvalidInput(f"{where}: beside `rows` the body has {extra}; put every column inside each row")
        return columns_of_rows(contract, rows, where)
    return columns_of_rows(contract, [payload], where, label="the row")


def columns_of_rows(
    contract: Tabular, rows: Sequence[Any], where: str = "body", *, label: str = "rows[{}]"
) -> dict[str, np.ndarray]:
    """A list of rows, each an object keyed by column -> ``{column: array}`` (see :func:`columns_from_rows`)."""
    table = contract.table
    assert table is not None, "columns_of_rows is for tabular contracts"
    names = [spec.name for spec in contract.inputs]
    nullable = set(table.nullable)
    values: dict[str, list[Any]] = {name: [] for name in names}
    for index, row in enumerate(rows):
        at = label.format(index)
        if not isinstance(row, dict):
            raise InvalidInput(f"{where}: {at} must be an object keyed by the columns {names}")
        unknown = [str(key)[:100] for key in row if key not in values]
        if unknown:
            raise InvalidInput(f"{where}: {at} has unknown column(s) {unknown[:5]}; the model takes {names}")
        for name in names:
            value = row.get(name)
            if value is None and name not in nullable:
                state = "null" if name in row else "missing"
                raise InvalidInput(f"column {name!r}: {state} in {at}; every row needs a value")
            values[name].append(value)
    return {spec.name: column_array(spec, values[spec.name], spec.name in nullable) for spec in contract.inputs}


def columns_of_lists(contract: Tabular, columns: Mapping[str, Any], where: str = "`inputs`") -> dict[str, np.ndarray]:
    """Columns sent as lists, one per column (TF Serving's columnar ``inputs``): ``{"tenure": [12, 40]}``.

    Each list holds a value per row (or ``[value]``, the ``[rows, 1]`` nesting); ``null`` is a missing
    value where the column is nullable, and a 400 naming the column and the row elsewhere.
    """
    table = contract.table
    assert table is not None, "columns_of_lists is for tabular contracts"
    names = [spec.name for spec in contract.inputs]
    unknown = [str(key)[:100] for key in columns if key not in names]
    if unknown:
        raise InvalidInput(f"{where}: unknown column(s) {unknown[:5]}; the model takes {names}")
    nullable = set(table.nullable)
    arrays: dict[str, np.ndarray] = {}
    lengths: set[int] = set()
    for spec in contract.inputs:
        if spec.name not in columns:
            raise InvalidInput(f"column {spec.name!r}: missing from {where}; the model takes {names}")
        values = columns[spec.name]
        if not isinstance(values, list):
            raise InvalidInput(f"column {spec.name!r}: a list of values, one per row")
        values = [value[0] if isinstance(value, list) and len(value) == 1 else value for value in values]
        if spec.name not in nullable and None in values:
            raise InvalidInput(f"column {spec.name!r}: null in row {values.index(None)}; every row needs a value")
        arrays[spec.name] = column_array(spec, values, spec.name in nullable)
        lengths.add(len(values))
    if len(lengths) > 1:
        raise InvalidInput(
            f"{where}: the columns have different lengths {sorted(lengths)}; each holds one value per row"
        )
    return arrays


def with_column_shapes(contract: Tabular, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Columns sent as flat lists (``{"tenure": [12, 40]}``) in the contract's rank: ``[rows]`` or ``[rows, 1]``."""
    ranks = {spec.name: len(spec.shape) for spec in contract.inputs}
    return {
        name: array.reshape(-1, 1) if ranks.get(name) == 2 and array.ndim == 1 else array
        for name, array in inputs.items()
    }


def column_array(spec: ColumnSpec, values: Sequence[Any], nullable: bool) -> np.ndarray:
    """One column's values (``None`` for a missing one, where allowed) -> an array of its declared shape."""
    where = f"column {spec.name!r}"
    text = spec.datatype == "BYTES"
    if nullable and not text:  # a float column (the contract checks): a missing value is NaN
        values = [math.nan if value is None else value for value in values]
    shape = [len(values)] + [1] * (len(spec.shape) - 1)
    if text:  # a missing string stays None (dataframe() makes it NaN, what pandas reads an empty cell as)
        odd = next((value for value in values if not isinstance(value, str) and value is not None), None)
        if odd is not None:
            raise InvalidInput(f"{where}: values must be strings, got {type(odd).__name__} {str(odd)[:40]!r}")
    return to_array(list(values), spec.datatype, where=where, shape=shape, nullable=nullable)


def normalize_oip_inputs(contract: Tabular, raw: Any) -> Any:
    """OIP ``inputs`` whose column shapes ``[rows]`` or ``[rows, 1]`` take the contract's own rank.

    MLServer's pandas codec sends ``[rows, 1]``, a plain client ``[rows]``: both mean one value per
    row. Anything else is left as sent, for the usual checks to refuse with their own message.
    """
    if not isinstance(raw, list):
        return raw
    ranks = {spec.name: len(spec.shape) for spec in contract.inputs}
    nullable = set(contract.table.nullable) if contract.table is not None else set()
    texts = {spec.name for spec in contract.inputs if spec.datatype == "BYTES"}
    normalized = []
    for tensor in raw:
        name = tensor.get("name") if isinstance(tensor, dict) else None
        rank = ranks.get(name) if isinstance(name, str) else None
        shape = tensor.get("shape") if rank is not None else None
        if isinstance(shape, list) and len(shape) != rank and shape and type(shape[0]) is int:
            if rank == 1 and len(shape) == 2 and shape[1] == 1:
                tensor = {**tensor, "shape": shape[:1]}
            elif rank == 2 and len(shape) == 1:
                tensor = {**tensor, "shape": [shape[0], 1]}
        if rank is not None and tensor["name"] in nullable - texts and isinstance(tensor.get("data"), list):
            # JSON has no NaN: a missing value of a nullable column is null (MLServer's pandas codec
            # writes null for NaN too).
            tensor = {**tensor, "data": [math.nan if value is None else value for value in tensor["data"]]}
        normalized.append(tensor)
    return normalized


def column_order(contract: Tabular, fitted: Sequence[str] | None) -> list[str]:
    """The columns in the order the model was fitted on (``feature_names_in_``), else the contract's.

    A fitted order that names other columns than the contract is a contract error naming both.
    """
    declared = [spec.name for spec in contract.inputs]
    if fitted is None:
        return declared
    fitted = [str(name) for name in fitted]
    if sorted(fitted) != sorted(declared):
        from modelfn.errors import ContractError

        missing, extra = sorted(set(fitted) - set(declared)), sorted(set(declared) - set(fitted))
        raise ContractError(
            f"field `inputs`: the model was fitted on the columns {fitted}; the contract lacks {missing} "
            f"and declares {extra} beside them (`modelfn init` reads them from the model)"
        )
    return fitted


def dataframe(columns: Sequence[str], inputs: Mapping[str, np.ndarray]) -> Any:
    """The pandas DataFrame of one request's columns, in ``columns`` order (strings as ``str``)."""
    import pandas as pd

    data = {}
    for name in columns:
        array = inputs[name].reshape(-1)
        if array.dtype == object:  # BYTES: binary OIP and gRPC send bytes, the model was fitted on str
            array = _as_text(array, name)
        data[name] = array
    return pd.DataFrame(data, columns=list(columns))


def _as_text(array: np.ndarray, name: str) -> np.ndarray:
    import numpy as np

    text = np.empty(array.shape, dtype=object)
    for index, value in enumerate(array):
        if value is None:  # a nullable column's missing value: NaN, as pandas reads an empty cell
            value = math.nan
        elif isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"column {name!r}: row {index} is not UTF-8 text") from None
        text[index] = value
    return text


def check_categories(name: str, column: np.ndarray, known: frozenset[Any] | set[Any]) -> None:
    """A value outside a column's known categories is the caller's: a 400 naming the column and the categories."""
    for value in column.reshape(-1).tolist():
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if text not in known and text is not None and text == text:  # None, NaN: missing, the imputer's
            listed = sorted(map(str, known))
            shown = ", ".join(repr(c) for c in listed[:20]) + (", ..." if len(listed) > 20 else "")
            raise InvalidInput(f"column {name!r}: unknown category {str(text)[:60]!r}; the model knows {shown}")


def check_declared_categories(contract: Tabular, inputs: Mapping[str, np.ndarray]) -> None:
    """Every column with ``table.categories`` holds only those values."""
    assert contract.table is not None
    for name, known in _declared_sets(contract.table.categories).items():
        if name in inputs:
            check_categories(name, inputs[name], known)


_DECLARED: dict[int, tuple[Any, dict[str, frozenset[Any]]]] = {}


def _declared_sets(categories: dict[str, list[Any]]) -> dict[str, frozenset[Any]]:
    """``table.categories`` as sets, built once per contract (each request is checked against them)."""
    known = _DECLARED.get(id(categories))
    if known is not None and known[0] is categories:  # the dict itself is kept, so its id is never reused
        return known[1]
    sets = {name: frozenset(values) for name, values in categories.items()}
    if len(_DECLARED) < 1024:  # contracts a process serves, not one per request
        _DECLARED[id(categories)] = (categories, sets)
    return sets
