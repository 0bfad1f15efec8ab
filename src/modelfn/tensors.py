"""JSON values <-> numpy arrays, strictly.

Every protocol decodes through :func:`to_array` and encodes through
:func:`to_json_data`, so the rules are the same everywhere: the declared size is
checked before anything proportional to it is allocated; numbers are never
parsed from strings; floats are never truncated into integer tensors; integers
out of the datatype's range are refused, not wrapped.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelfn.datatypes import DATATYPE_OF_NUMPY, NUMPY_DTYPES
from modelfn.errors import InvalidInput, PayloadTooLarge

_FLOAT = {"FP16", "FP32", "FP64"}
#: The smallest magnitude that rounds to infinity in the narrower float datatypes: the largest
#: finite value plus half its spacing (what JSON writes for the largest float32 is a little above it).
_FLOAT_MAX = {
    name: float(top) + (float(top) - float(np.nextafter(top, kind(0)))) / 2
    for name, kind, top in ((n, k, np.finfo(k).max) for n, k in (("FP16", np.float16), ("FP32", np.float32)))
}
_INT = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}


def check_shape_form(shape: Any, *, where: str) -> list[int]:
    """A declared shape's form: at most 16 non-negative integers (a 400 otherwise)."""
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidInput(f"{where}: shape must be a list of non-negative integers, got {_brief(shape)}")
    if len(shape) > 16:
        raise InvalidInput(f"{where}: shape has {len(shape)} dimensions; at most 16 are allowed")
    return shape


def check_shape(shape: Any, *, where: str, max_elements: int, form_checked: bool = False) -> tuple[int, ...]:
    """Validate a declared shape (its form, unless ``form_checked``) and its element count before any allocation."""
    if not form_checked:
        check_shape_form(shape, where=where)
    count = math.prod(shape)
    if count > max_elements:
        raise PayloadTooLarge(f"{where}: shape {_brief(shape)} has {count} elements; the limit is {max_elements}")
    if math.prod(d for d in shape if d) > max_elements:  # empty, but numpy could not even describe it
        raise PayloadTooLarge(
            f"{where}: shape {_brief(shape)}: its non-zero dimensions exceed the {max_elements}-element limit"
        )
    return tuple(shape)


def check_datatype(datatype: Any, *, where: str) -> str:
    """A declared OIP datatype, or a 400 listing the valid ones (whatever JSON type was sent)."""
    if not isinstance(datatype, str) or datatype not in NUMPY_DTYPES:
        raise InvalidInput(f"{where}: unknown datatype {_brief(datatype)}; expected one of {', '.join(NUMPY_DTYPES)}")
    return datatype


def to_array(
    data: Any, datatype: str, *, where: str, shape: Sequence[int] | None = None, nullable: bool = False
) -> np.ndarray:
    """Convert JSON ``data`` (flat or nested) to an array of ``datatype``.

    With ``shape`` (already checked by :func:`check_shape`), the element count must
    match and the result takes that shape; without it, the nesting gives the shape.
    ``nullable``: BYTES data may hold ``null`` (a table's column with missing values), kept as None.
    """
    check_datatype(datatype, where=where)
    if datatype == "BYTES":
        array = _bytes_array(data, where, nullable)
    else:
        array = _numeric_array(data, datatype, where)
    if shape is None:
        return array
    count = math.prod(shape)
    if array.size != count:
        raise InvalidInput(f"{where}: shape {list(shape)} needs {count} elements, data has {array.size}")
    return array.reshape(shape)


def _numeric_array(data: Any, datatype: str, where: str) -> np.ndarray:
    if isinstance(data, np.ndarray):
        array = data
    else:
        try:
            array = np.asarray(data)
        except (ValueError, TypeError):
            raise InvalidInput(f"{where}: data is ragged; every row must have the same length") from None
    kind = array.dtype.kind
    target = np.dtype(NUMPY_DTYPES[datatype])
    if array.size == 0 and kind in "fO":  # `[]` has no elements to disagree with the datatype (numpy says float)
        return np.zeros(array.shape, target)
    if kind in "US":
        raise InvalidInput(f"{where}: {datatype} data must be numbers, got strings")
    if kind == "O":
        raise InvalidInput(
            f"{where}: {datatype} data must be numbers of one kind (no nulls, no objects, no integers beyond 64 bits)"
        )
    if datatype == "BOOL":
        if kind != "b":
            raise InvalidInput(f"{where}: BOOL data must be true/false")
        return array
    if kind == "b":
        raise InvalidInput(f"{where}: {datatype} data must be numbers, got true/false")
    if datatype == "UINT64" and kind == "f":
        array = _uint64_or_float(data, array)
        kind = array.dtype.kind
    if datatype in _INT:
        if kind == "f":
            raise InvalidInput(f"{where}: {datatype} data must be integers, got floating-point numbers")
        if array.size and array.dtype != target:
            info = np.iinfo(target)
            low, high = array.min(), array.max()
            if low < info.min or high > info.max:
                raise InvalidInput(f"{where}: value out of range for {datatype} ({info.min}..{info.max})")
    elif datatype in _FLOAT:
        if kind not in "iuf":
            raise InvalidInput(f"{where}: {datatype} data must be numbers")
        # A number too large for a narrower float would become infinity: refused. (A reduction,
        # not a cast under np.errstate: that context manager costs more than the whole check.)
        limit = _FLOAT_MAX.get(datatype)
        wider = datatype == "FP16" or array.dtype.itemsize > 4
        if limit is not None and array.size and wider and (array.max() >= limit or array.min() <= -limit):
            raise InvalidInput(f"{where}: value out of range for {datatype} (|x| < {limit:.4g})")
    return array.astype(target, copy=False)


def _uint64_or_float(data: Any, inferred: np.ndarray) -> np.ndarray:
    """numpy infers float64 for ints mixing [0, 2**63) and [2**63, 2**64); recover exact uint64."""
    try:
        exact = np.asarray(data, dtype=np.uint64)
    except (OverflowError, ValueError, TypeError):
        return inferred
    return exact if np.array_equal(exact.astype(np.float64), inferred) else inferred


def _bytes_array(data: Any, where: str, nullable: bool = False) -> np.ndarray:
    """Strings (nested lists of them) as an object array whose shape is the nesting's.

    Flat OIP data takes its shape from the request afterwards; nested data (TF Serving's rows) keeps
    its own, which must be rectangular: every list at one depth the same length, strings at the leaves.
    """
    if not isinstance(data, list):
        data = [data]
    shape: list[int] = []  # the first list at each depth sets that depth's length
    probe: Any = data
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    items: list[str | bytes | None] = []
    stack = [(iter(data), 0)]
    while stack:  # iterative flatten: no recursion limit to hit
        iterator, depth = stack[-1]
        for item in iterator:
            if isinstance(item, list):
                if depth + 1 >= len(shape) or len(item) != shape[depth + 1]:
                    raise InvalidInput(f"{where}: BYTES data must be rectangular nested lists of strings")
                stack.append((iter(item), depth + 1))
                break
            if not isinstance(item, str | bytes) and not (item is None and nullable):  # bytes: TF Serving's b64
                raise InvalidInput(f"{where}: BYTES data must be strings, got {type(item).__name__}")
            if depth != len(shape) - 1:
                raise InvalidInput(f"{where}: BYTES data must be rectangular nested lists of strings")
            items.append(item)
        else:
            stack.pop()
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array.reshape(shape)  # rectangular, as checked: the shape holds exactly these items


def datatype_of(array: np.ndarray) -> str:
    """The OIP datatype of an array; strings of any kind are BYTES."""
    if array.dtype.kind in "OUS":
        return "BYTES"
    datatype = _dtype_info(array.dtype)[0]
    if datatype is None:
        raise TypeError(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")
    return datatype


@functools.cache
def _dtype_info(dtype: np.dtype) -> tuple[str | None, np.dtype]:
    """(OIP datatype, canonical dtype) of a numeric dtype, computed once per dtype.

    numpy 2 computes ``dtype.name`` in Python; the request path asked for it five times a request.
    """
    return DATATYPE_OF_NUMPY.get(dtype.name), np.dtype(dtype.name)


def to_json_data(array: np.ndarray) -> Any:
    """Flat, row-major data for JSON: a numpy array orjson serializes natively, or a list."""
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.dtype.kind in "OUS":
        return [_text(item) for item in flat.tolist()]
    return _canonical(flat)


def text_or_bytes(data: bytes) -> str | bytes:
    """A BYTES element as ``str`` when it is UTF-8 text (what ONNX Runtime takes), else the bytes themselves.

    Binary elements (an image's bytes for a TensorFlow ``tf.string`` input) go on to the model as
    they came; ONNX Runtime, which would turn them into the text of their repr, refuses them.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def to_json_value(array: np.ndarray) -> Any:
    """Nested JSON for row-format protocols: numeric arrays stay numpy (orjson writes them)."""
    if array.dtype.kind in "OUS":
        return np.vectorize(_text, otypes=[object])(array).tolist() if array.size else array.tolist()
    return _canonical(np.ascontiguousarray(array))


def _canonical(array: np.ndarray) -> np.ndarray:
    """View e.g. ``longlong`` (what ONNX Runtime returns) as ``int64``: orjson knows the canonical types."""
    canonical = _dtype_info(array.dtype)[1]
    return array if array.dtype.type is canonical.type else array.view(canonical)


def _text(item: Any) -> Any:
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else item


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_signature(contract: Any, declared: Mapping[str, tuple[str, Sequence[int]]]) -> None:
    """Names, datatypes and shapes (``{name: (datatype, shape)}``) against the contract's inputs.

    Protocols call it on what a request declares, before its data is decoded: a request the
    model cannot take costs no decoding.
    """
    specs = _specs_by_name(contract.inputs)
    if declared.keys() != specs.keys():
        unknown = sorted(set(declared) - set(specs))
        if unknown:
            raise InvalidInput(
                f"unknown input(s) {[name[:100] for name in unknown[:10]]}; the model takes {sorted(specs)}"
            )
        raise InvalidInput(f"missing input(s) {sorted(set(specs) - set(declared))}")
    for name, (datatype, shape) in declared.items():
        spec = specs[name]
        if datatype != spec.datatype:
            raise InvalidInput(f"input {name!r}: datatype {datatype}, the model expects {spec.datatype}")
        if len(shape) != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
        ):
            raise InvalidInput(f"input {name!r}: shape {list(shape)} does not fit the model's {spec.shape} (-1 = any)")


_SPECS: dict[int, tuple[Any, dict[str, Any]]] = {}


def _specs_by_name(specs: Sequence[Any]) -> dict[str, Any]:
    """``{name: spec}`` of a contract's inputs, built once per list (each request asks for it)."""
    known = _SPECS.get(id(specs))
    if known is not None and known[0] is specs:  # the list itself is kept, so its id is never reused
        return known[1]
    by_name = {spec.name: spec for spec in specs}
    if len(_SPECS) < 1024:  # contracts a process serves, not one per request
        _SPECS[id(specs)] = (specs, by_name)
    return by_name


def named_inputs(contract: Any, values: Any, where: str) -> dict[str, np.ndarray]:
    """``{input name: JSON value}`` -> arrays of the contract's datatypes.

    Missing inputs are reported by :func:`check_signature`, with every other check. ``contract`` is
    anything with ``inputs`` and ``input(name)``: the contract, or the edge runner's copy of it.
    """
    if not isinstance(values, dict):
        raise InvalidInput(f"{where} must be an object keyed by input names {[s.name for s in contract.inputs]}")
    inputs = {}
    for name, value in values.items():
        spec = contract.input(name)
        if spec is None:
            raise InvalidInput(
                f"{where}: unknown input {str(name)[:100]!r}; the model takes {[s.name for s in contract.inputs]}"
            )
        inputs[name] = to_array(value, spec.datatype, where=f"input {name!r}")
    return inputs
