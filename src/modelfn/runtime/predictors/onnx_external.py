"""Find the tensors of an ONNX model that keep their data in external files, without the onnx package.

A tensor whose data lives in another file (``external_data``, ``data_location:
EXTERNAL``) names that file by a path inside the model, the path that
CVE-2022-25882, CVE-2024-27318 and their symlink variants used to read files
outside the model's folder. modelfn loads such a model only when every file it
names is one the contract pins by sha256 (``artifact.files``), verified and
sitting in the version's own folder; any other location is refused before ONNX
Runtime sees the model, whatever its version does with them.

The walk reads protobuf's wire format directly (the runtime does not depend on
the onnx package): tags and lengths only, so large weights are skipped, not
copied. It visits the main graph, every subgraph (``If``, ``Loop``, ``Scan``
bodies) and model-local functions.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator

# Field numbers from onnx/onnx.proto3.
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_FUNCTION_NODE = 7
_NODE_ATTRIBUTE = 5
_ATTRIBUTE_TENSOR, _ATTRIBUTE_GRAPH, _ATTRIBUTE_TENSORS, _ATTRIBUTE_GRAPHS = 5, 6, 10, 11
_ATTRIBUTE_SPARSE_TENSOR, _ATTRIBUTE_SPARSE_TENSORS = 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 8, 13, 14
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_EXTERNAL = 1
#: Deeper nesting than this is no real model: refused rather than walked.
_MAX_DEPTH = 64


class MalformedModel(ValueError):
    """The bytes are not a well-formed protobuf message."""


def external_tensors(model: bytes | memoryview) -> list[str]:
    """Names of the tensors that keep their data outside ``model`` (a serialized ``ModelProto``)."""
    return [name for name, _ in external_locations(model)]


def external_locations(model: bytes | memoryview) -> list[tuple[str, str]]:
    """``(tensor name, location)`` of every tensor kept outside ``model``; ``""`` where none is given.

    Only tags and lengths are read, so a memory-mapped model is walked without paging its weights in.
    """
    view = memoryview(model)
    found: list[tuple[str, str]] = []
    for field, value in _fields(view):
        if field == _MODEL_GRAPH:
            _graph(value, found, 1)
        elif field == _MODEL_FUNCTIONS:
            for inner, node in _fields(value):
                if inner == _FUNCTION_NODE:
                    _node(node, found, 1)
    return found


def external_locations_in_file(fd: int) -> list[tuple[str, str]]:
    """:func:`external_locations` of the model file open at ``fd``, walked over a read-only memory map."""
    try:
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except ValueError:  # mmap refuses an empty file
        raise MalformedModel("the file is empty") from None
    with mapped:
        view = memoryview(mapped)
        try:
            return external_locations(view)
        except MalformedModel as exc:
            # Re-raised as a fresh error: this one's frames hold slices of the map, which must go before it closes.
            problem = str(exc)
        finally:
            view.release()
    raise MalformedModel(problem)


def _graph(graph: memoryview, found: list[tuple[str, str]], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise MalformedModel("subgraphs nested too deep")
    for field, value in _fields(graph):
        if field == _GRAPH_NODE:
            _node(value, found, depth)
        elif field == _GRAPH_INITIALIZER:
            _tensor(value, found)
        elif field == _GRAPH_SPARSE_INITIALIZER:
            _sparse(value, found)


def _node(node: memoryview, found: list[tuple[str, str]], depth: int) -> None:
    for field, attribute in _fields(node):
        if field != _NODE_ATTRIBUTE:
            continue
        for inner, value in _fields(attribute):
            if inner in (_ATTRIBUTE_TENSOR, _ATTRIBUTE_TENSORS):
                _tensor(value, found)
            elif inner in (_ATTRIBUTE_GRAPH, _ATTRIBUTE_GRAPHS):
                _graph(value, found, depth + 1)
            elif inner in (_ATTRIBUTE_SPARSE_TENSOR, _ATTRIBUTE_SPARSE_TENSORS):
                _sparse(value, found)


def _sparse(sparse: memoryview, found: list[tuple[str, str]]) -> None:
    for field, value in _fields(sparse):
        if field in (_SPARSE_VALUES, _SPARSE_INDICES):
            _tensor(value, found)


def _tensor(tensor: memoryview, found: list[tuple[str, str]]) -> None:
    name, location, external = "", "", False
    for field, value in _scan(tensor, varints=(_TENSOR_DATA_LOCATION,)):
        if isinstance(value, int):  # the one varint asked for: where the data lives
            external = external or (field == _TENSOR_DATA_LOCATION and value == _EXTERNAL)
        elif field == _TENSOR_NAME:
            name = bytes(value[:200]).decode("utf-8", "replace")
        elif field == _TENSOR_EXTERNAL_DATA:
            external = True
            entry = dict(_fields(value))
            if bytes(entry.get(_ENTRY_KEY, b"")) == b"location":
                location = bytes(entry.get(_ENTRY_VALUE, b"")[:1024]).decode("utf-8", "replace")
    if external:
        found.append((name or "<unnamed>", location))


def _fields(message: memoryview) -> Iterator[tuple[int, memoryview]]:
    """``(field number, value)`` for the length-delimited fields (sub-messages, strings, bytes)."""
    for field, value in _scan(message, ()):
        if isinstance(value, memoryview):
            yield field, value


def _scan(message: memoryview, varints: tuple[int, ...]) -> Iterator[tuple[int, memoryview | int]]:
    """``(field number, value)`` for the length-delimited fields, and the varint fields in ``varints``."""
    position, end = 0, len(message)
    while position < end:
        key, position = _varint(message, position)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(message, position)
            if field in varints:
                yield field, value
        elif wire == 2:
            length, position = _varint(message, position)
            if position + length > end:
                raise MalformedModel("a field runs past the end of its message")
            yield field, message[position : position + length]
            position += length
        elif wire == 1:
            position += 8
        elif wire == 5:
            position += 4
        else:
            raise MalformedModel(f"unsupported wire type {wire}")
    if position != end:
        raise MalformedModel("a field runs past the end of its message")


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise MalformedModel("truncated or oversized varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
