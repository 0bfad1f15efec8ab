"""The OIP binary tensor data extension (Triton, KServe).

A request or response body is a JSON header followed by raw tensors; the
``Inference-Header-Content-Length`` header gives the JSON's length. A tensor
sent this way carries ``parameters.binary_data_size`` instead of ``data``: its
elements little-endian and packed, BOOL one byte each, BYTES each prefixed by
a 4-byte little-endian length. Sizes are checked against the declared shape
before anything is decoded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from modelfn.datatypes import NUMPY_DTYPES
from modelfn.errors import InvalidInput, MalformedBody
from modelfn.tensors import check_datatype, text_or_bytes

HEADER = "Inference-Header-Content-Length"
EXTENSION = "binary_tensor_data"


def split_body(body: bytes, headers: Mapping[str, str]) -> tuple[bytes, memoryview | None]:
    """Separate the JSON header from the binary tail (``None``: the body is plain JSON)."""
    raw = headers.get(HEADER)
    if raw is None:
        return body, None
    # ASCII digits only, and few: str.isdigit admits "²" and "١", and int() refuses 4,300 digits.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18) or not 0 < int(raw) <= len(body):
        raise MalformedBody(f"{HEADER} must be a length between 1 and the body's {len(body)} bytes, got {raw[:20]!r}")
    length = int(raw)
    return body[:length], memoryview(body)[length:]


class BinaryReader:
    """Hands out the binary tail in request order; all of it must be claimed."""

    def __init__(self, blob: memoryview) -> None:
        self._blob = blob
        self._offset = 0

    def take(self, size: object, where: str) -> memoryview:
        if type(size) is not int or size < 0:
            raise MalformedBody(f"{where}: binary_data_size must be a non-negative integer")
        end = self._offset + size
        if end > len(self._blob):
            raise MalformedBody(
                f"{where}: binary_data_size is {size}, only {len(self._blob) - self._offset} bytes remain"
            )
        chunk = self._blob[self._offset : end]
        self._offset = end
        return chunk

    def finish(self) -> None:
        unclaimed = len(self._blob) - self._offset
        if unclaimed:
            raise MalformedBody(f"{unclaimed} bytes of binary data follow the JSON but no input claims them")


def decode(chunk: memoryview, datatype: str, shape: Sequence[int], where: str) -> np.ndarray:
    """Raw little-endian bytes -> an array of ``shape``; the size must match exactly."""
    count = math.prod(shape)
    check_datatype(datatype, where=where)
    if datatype == "BYTES":
        return _decode_bytes(chunk, count, where).reshape(shape)
    dtype = np.dtype(NUMPY_DTYPES[datatype]).newbyteorder("<")
    if len(chunk) != count * dtype.itemsize:
        raise InvalidInput(
            f"{where}: shape {list(shape)} of {datatype} needs {count * dtype.itemsize} bytes, got {len(chunk)}"
        )
    if datatype == "BOOL":
        octets = np.frombuffer(chunk, dtype=np.uint8)
        if octets.size and octets.max() > 1:
            raise InvalidInput(f"{where}: BOOL bytes must be 0 or 1")
        return octets.astype(bool).reshape(shape)
    return np.frombuffer(chunk, dtype=dtype).astype(dtype.newbyteorder("="), copy=False).reshape(shape)


def _decode_bytes(chunk: memoryview, count: int, where: str) -> np.ndarray:
    items = np.empty(count, dtype=object)
    offset = 0
    for index in range(count):
        if offset + 4 > len(chunk):
            raise InvalidInput(f"{where}: binary BYTES data ends after {index} of {count} elements")
        length = int.from_bytes(chunk[offset : offset + 4], "little")
        offset += 4
        if offset + length > len(chunk):
            raise InvalidInput(f"{where}: BYTES element {index} claims {length} bytes past the end of its data")
        items[index] = text_or_bytes(bytes(chunk[offset : offset + length]))
        offset += length
    if offset != len(chunk):
        raise InvalidInput(f"{where}: {len(chunk) - offset} bytes left after {count} BYTES elements")
    return items


def encode(array: np.ndarray) -> bytes:
    """An output array as raw little-endian bytes (BYTES: length-prefixed UTF-8)."""
    if array.dtype.kind in "OUS":
        parts = []
        for item in array.reshape(-1).tolist():
            data = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts.append(len(data).to_bytes(4, "little") + data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
