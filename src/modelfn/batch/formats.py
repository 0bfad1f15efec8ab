"""Input files for batch prediction, read as a stream of rows in bounded memory.

- **CSV**: one row of numbers per line, filling the model's one input (a header line is skipped).
  For a tabular contract (``table:``) the header is required and maps each cell to its column by
  name; columns the model does not take (a label column) are left out, and an empty cell is a
  missing value.
- **JSON Lines** (``.jsonl``, ``.ndjson``): one JSON object per line. With a pre-processing hook,
  each line is a ``POST /predict`` body; without one, ``{input name: one row}``.
- **NumPy** (``.npy``): an array whose rows fill the model's one input; read without pickle.

Whatever the file's size, at most one block of bytes (:data:`BLOCK`) and one chunk of rows are
held at a time. A bad row is reported with its line number and the rest is still read.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelfn.contract import Contract, TensorSpec
from modelfn.datatypes import NUMPY_DTYPES
from modelfn.errors import ContractError, InvalidInput
from modelfn.runtime.stores import Store

BLOCK = 8 << 20  # bytes per ranged read from the store
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".npy": "npy"}


class UnreadableInput(ContractError):
    """The whole file cannot be read as a batch input: unknown format, bad header, wrong dtype."""


@dataclass(frozen=True)
class Row:
    """One input row: its 1-based number (the line in a text file) and its parsed value."""

    number: int
    value: Any


@dataclass(frozen=True)
class BadRow:
    number: int
    error: str


def format_of(key: str) -> str:
    suffix = "." + key.rsplit(".", 1)[-1].lower() if "." in key else ""
    if suffix not in FORMATS:
        raise UnreadableInput(f"{key}: unknown input format {suffix or '(no extension)'}; use {', '.join(FORMATS)}")
    return FORMATS[suffix]


class RangeReader(io.RawIOBase):
    """An object in a store as a readable stream, fetched one ranged read at a time."""

    def __init__(self, store: Store, key: str, size: int) -> None:
        self.store, self.key, self.size, self.position = store, key, size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self.size - self.position)
        if wanted <= 0:
            return 0
        data = self.store.read_range(self.key, self.position, wanted)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def open_object(store: Store, key: str, size: int) -> io.BufferedReader:
    return io.BufferedReader(RangeReader(store, key, size), buffer_size=BLOCK)


def read_rows(
    stream: io.BufferedReader, fmt: str, contract: Contract, *, max_line_bytes: int
) -> Iterator[Row | BadRow]:
    """Every row of ``stream`` in ``fmt``: parsed, or a :class:`BadRow` saying why not."""
    if fmt == "csv" and contract.table is not None:
        yield from _csv_table_rows(stream, contract, max_line_bytes)
    elif fmt == "csv":
        yield from _csv_rows(stream, row_spec(contract, fmt), max_line_bytes)
    elif fmt == "jsonl":
        yield from _jsonl_rows(stream, max_line_bytes)
    elif fmt == "npy":
        yield from _npy_rows(stream, row_spec(contract, fmt))
    else:
        raise UnreadableInput(f"unknown format {fmt!r}")


def row_spec(contract: Contract, fmt: str) -> TensorSpec:
    """The one input CSV and NumPy rows fill; its dimensions after the first must be fixed."""
    if len(contract.inputs) != 1:
        raise UnreadableInput(
            f"{fmt} rows fill a model's one input; {contract.name} takes {[s.name for s in contract.inputs]}: "
            "use JSON Lines with one object per row"
        )
    spec = contract.inputs[0]
    if not spec.shape or spec.shape[0] != -1 or -1 in spec.shape[1:]:
        raise UnreadableInput(f"{fmt} rows need input {spec.name!r} shaped [-1, fixed...], it is {spec.shape}")
    return spec


def _csv_rows(stream: io.BufferedReader, spec: TensorSpec, max_line_bytes: int) -> Iterator[Row | BadRow]:
    """One row per line, each read in a bounded read; a first line of words is the header."""
    first = True
    for number, line in _lines(stream, max_line_bytes):
        if line is None:
            yield BadRow(number, f"the line is over {max_line_bytes} bytes")
            continue
        kind, value = csv_line(line, spec)
        if kind == "blank":
            continue
        if kind == "words" and first:  # a header line
            first = False
            continue
        first = False
        yield Row(number, value) if kind == "row" else BadRow(number, value)


def _csv_table_rows(stream: io.BufferedReader, contract: Contract, max_line_bytes: int) -> Iterator[Row | BadRow]:
    """Rows of a table by header: each a ``{column: value}`` object, as ``POST /predict`` takes one."""
    specs = {spec.name: spec for spec in contract.inputs}
    # An empty cell of a nullable string column is a missing value, as pandas reads it; elsewhere a string.
    missing_when_empty = set(contract.table.nullable) if contract.table is not None else set()
    header: list[str] | None = None
    for number, line in _lines(stream, max_line_bytes):
        if line is None:
            if header is None:
                raise UnreadableInput(f"the header line is over {max_line_bytes} bytes")
            yield BadRow(number, f"the line is over {max_line_bytes} bytes")
            continue
        if not line.strip():
            continue
        try:
            cells = next(csv.reader([line.decode("utf-8", "replace")]))
        except (csv.Error, StopIteration) as exc:
            if header is None:
                raise UnreadableInput(f"line {number}: the header is not CSV: {exc}") from None
            yield BadRow(number, f"not CSV: {exc}")
            continue
        if header is None:
            header = [cell.strip() for cell in cells]
            missing = [name for name in specs if name not in header]
            if missing:
                raise UnreadableInput(f"the CSV header has no column {missing} of {list(specs)}; it has {header[:20]}")
            continue
        if len(cells) != len(header):
            yield BadRow(number, f"expected {len(header)} cells as in the header, got {len(cells)}")
            continue
        row: dict[str, Any] = {}
        try:
            for name, cell in zip(header, cells, strict=True):
                if name in specs:
                    empty = name in missing_when_empty and not cell.strip()
                    row[name] = None if empty else cell_value(cell, specs[name])
        except InvalidInput as exc:
            yield BadRow(number, exc.message)
            continue
        yield Row(number, row)


def cell_value(cell: str, spec: TensorSpec) -> Any:
    """A CSV cell as the JSON value a person would write for ``spec``'s column (empty: missing)."""
    if spec.datatype == "BYTES":
        return cell
    text = cell.strip()
    if not text:
        return None
    if spec.datatype == "BOOL":
        if text.lower() not in ("true", "false", "1", "0"):
            raise InvalidInput(f"column {spec.name!r}: {text[:40]!r} is not true or false")
        return text.lower() in ("true", "1")
    try:
        number = float(text)
    except ValueError:
        raise InvalidInput(f"column {spec.name!r}: {text[:40]!r} is not a number") from None
    if spec.datatype.startswith("FP"):
        return number
    if not number.is_integer():
        raise InvalidInput(f"column {spec.name!r} is {spec.datatype}: {text[:40]!r} is not an integer")
    return int(text) if text.lstrip("+-").isdigit() else int(number)


def csv_line(line: bytes, spec: TensorSpec) -> tuple[str, Any]:
    """One CSV line as a row of ``spec``: ``("row", values)``, ``("blank", None)``, ``("bad", why)``,
    or ``("words", why)`` for cells that are not numbers (a header, on a file's first line).

    The cells are counted before they are split: a line with more cells than the input takes is
    refused whatever its length (the csv module alone would build a list of every cell of a 1 GB line).
    """
    width = math.prod(spec.shape[1:])
    if not line.strip():
        return "blank", None
    cell_count = line.count(b",") + 1
    if cell_count > width:  # more cells than the row takes: refused before splitting them
        return "bad", f"expected {width} numbers, got {cell_count}"
    try:
        cells = next(csv.reader([line.decode("utf-8", "replace")]))
    except (csv.Error, StopIteration) as exc:
        return "bad", f"not CSV: {exc}"
    if all(not c.strip() for c in cells):
        return "blank", None
    try:
        values = np.array([float(c) for c in cells], dtype=np.float64)
    except ValueError:
        return "words", f"expected {width} numbers, got {_brief(cells)}"
    dtype = np.dtype(NUMPY_DTYPES[spec.datatype])
    if values.size != width:
        return "bad", f"expected {width} numbers, got {values.size}"
    if not np.isfinite(values).all():
        return "bad", "NaN and infinite values are not accepted"
    if dtype.kind in "iu" and not (values == np.round(values)).all():
        return "bad", f"input {spec.name!r} is {spec.datatype}: integers only"
    return "row", values.astype(dtype).reshape(spec.shape[1:])


def _lines(stream: io.BufferedReader, max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, line)``, each read in at most ``max_line_bytes``; None for a longer line, skipped."""
    number = 0
    while True:
        line = stream.readline(max_line_bytes + 1)
        if not line:
            return
        number += 1
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # skip the rest of the line, in bounded reads
                line = stream.readline(BLOCK)
            yield number, None
        else:
            yield number, line


def _jsonl_rows(stream: io.BufferedReader, max_line_bytes: int) -> Iterator[Row | BadRow]:
    for number, line in _lines(stream, max_line_bytes):
        if line is None:
            yield BadRow(number, f"the line is over {max_line_bytes} bytes")
        elif line.strip():
            yield json_row(number, line)


def json_row(number: int, text: bytes | str) -> Row | BadRow:
    """One JSON Lines row (a file's line, a Spark column's value), parsed or refused."""
    try:
        return Row(number, orjson.loads(text))
    except orjson.JSONDecodeError as exc:
        return BadRow(number, f"not JSON: {exc}")


def _npy_rows(stream: io.BufferedReader, spec: TensorSpec) -> Iterator[Row | BadRow]:
    from numpy.lib import format as npy

    headers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    try:
        version = npy.read_magic(stream)
        if version not in headers:
            raise ValueError(f"format version {version} (np.save writes 1.0 or 2.0)")
        shape, fortran, dtype = headers[version](stream)
    except (ValueError, OSError) as exc:
        raise UnreadableInput(f"not a NumPy .npy file: {exc}") from None
    if dtype.hasobject:
        raise UnreadableInput("the .npy file holds Python objects; only numeric arrays are read (no pickle)")
    if fortran:
        raise UnreadableInput("the .npy array is in Fortran order; save it with np.save(np.ascontiguousarray(a))")
    if tuple(shape[1:]) != tuple(spec.shape[1:]):
        raise UnreadableInput(
            f"the array's rows are shaped {list(shape[1:])}; input {spec.name!r} needs {spec.shape[1:]}"
        )
    want = np.dtype(NUMPY_DTYPES[spec.datatype])
    if not np.can_cast(dtype, want, casting="same_kind"):
        raise UnreadableInput(f"the array is {dtype}; input {spec.name!r} is {spec.datatype}")
    row_bytes = dtype.itemsize * math.prod(shape[1:])
    per_read = max(1, BLOCK // max(row_bytes, 1))
    number = 0
    while number < shape[0]:
        count = min(per_read, shape[0] - number)
        data = stream.read(count * row_bytes)
        truncated = len(data) < count * row_bytes
        if truncated:  # the whole rows that did arrive are still predicted; the missing ones reported
            count = len(data) // row_bytes
            data = data[: count * row_bytes]
        block = np.frombuffer(data, dtype=dtype).reshape(count, *shape[1:]).astype(want, copy=False)
        for row in block:
            number += 1
            if row.dtype.kind == "f" and not np.isfinite(row).all():
                yield BadRow(number, "NaN and infinite values are not accepted")
            else:
                yield Row(number, row)
        if truncated:
            missing = f"row {number + 1}" if number + 1 == shape[0] else f"rows {number + 1} to {shape[0]}"
            yield BadRow(
                number + 1,
                f"{missing} missing: the file ends after {number} of the {shape[0]} rows its header declares",
            )
            return


def array_row(number: int, values: np.ndarray, spec: TensorSpec) -> Row | BadRow:
    """One row given as an array (a Beam element, a Spark column's value), checked as a file's row is."""
    want = np.dtype(NUMPY_DTYPES[spec.datatype])
    if values.size != math.prod(spec.shape[1:]):
        return BadRow(number, f"input {spec.name!r}: expected {math.prod(spec.shape[1:])} numbers, got {values.size}")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        return BadRow(number, "NaN and infinite values are not accepted")
    if want.kind in "iu" and values.dtype.kind == "f" and not (values == np.round(values)).all():
        return BadRow(number, f"input {spec.name!r} is {spec.datatype}: integers only")
    if values.dtype.kind not in "biuf":
        return BadRow(number, f"input {spec.name!r} is {spec.datatype}; the row holds {values.dtype}")
    return Row(number, values.astype(want, copy=False).reshape(spec.shape[1:]))


def _brief(cells: list[str]) -> str:
    text = ",".join(cells)
    return repr(text if len(text) <= 80 else text[:77] + "...")


def check_row_payload(value: Any, contract: Contract) -> None:
    """A JSON Lines row without a pre-processing hook must be ``{input name: one row}``."""
    if not isinstance(value, dict):
        raise InvalidInput(f"each line must be an object keyed by input names {[s.name for s in contract.inputs]}")
