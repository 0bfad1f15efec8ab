"""The JSON <-> numpy codec rules shared by every protocol."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from modelfn.errors import InvalidInput, PayloadTooLarge
from modelfn.tensors import check_shape, datatype_of, to_array, to_json_data

VALUES = {
    "BOOL": [True, False],
    "UINT8": [0, 255], "UINT16": [0, 65535], "UINT32": [0, 2**32 - 1], "UINT64": [0, 2**64 - 1],
    "INT8": [-128, 127], "INT16": [-32768, 32767], "INT32": [-(2**31), 2**31 - 1],
    "INT64": [-(2**63), 2**63 - 1],
    "FP16": [0.5, -2.0], "FP32": [0.25, 1e30], "FP64": [0.1, 1e300], "BYTES": ["héllo", ""],
}  # fmt: skip


@pytest.mark.parametrize("datatype", VALUES)
def test_every_datatype_round_trips_at_its_extremes(datatype: str) -> None:
    array = to_array(VALUES[datatype], datatype, where="x", shape=(2,))
    assert datatype_of(array) == datatype
    data = orjson.loads(orjson.dumps(to_json_data(array), option=orjson.OPT_SERIALIZE_NUMPY))
    assert data == VALUES[datatype]


def test_nested_and_flat_data_give_the_same_tensor() -> None:
    flat = to_array([1, 2, 3, 4, 5, 6], "INT32", where="x", shape=(2, 3))
    nested = to_array([[1, 2, 3], [4, 5, 6]], "INT32", where="x", shape=(2, 3))
    assert np.array_equal(flat, nested) and flat.shape == (2, 3)


@pytest.mark.parametrize(
    ("data", "datatype", "message"),
    [
        ([1.5], "INT32", "must be integers, got floating-point"),
        ([256], "UINT8", r"out of range for UINT8 \(0..255\)"),
        ([-1], "UINT32", "out of range"),
        ([2**64], "UINT64", "no integers beyond 64 bits"),
        (["1.0"], "FP32", "must be numbers, got strings"),
        ([True], "FP32", "got true/false"),
        ([1], "BOOL", "BOOL data must be true/false"),
        ([None], "FP32", "no nulls"),
        ([[1, 2], [3]], "FP32", "ragged"),
        ([1, 2], "COMPLEX64", "unknown datatype 'COMPLEX64'"),
        ([1, 2], [None], r"unknown datatype \[None\]"),
        ([1], "BYTES", "BYTES data must be strings, got int"),
        ([1e300], "FP32", r"out of range for FP32"),  # would become inf
        ([70000], "FP16", r"out of range for FP16"),
    ],
)
def test_values_are_never_silently_coerced(data, datatype, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        to_array(data, datatype, where="input 'x'")


def test_element_count_must_match_the_shape() -> None:
    with pytest.raises(InvalidInput, match=r"shape \[2, 2\] needs 4 elements, data has 3"):
        to_array([1, 2, 3], "FP32", where="x", shape=(2, 2))


@pytest.mark.parametrize("shape", [[-1, 2], [1.5], "2", [True], [1] * 17])
def test_bad_shapes_are_refused(shape) -> None:
    with pytest.raises(InvalidInput):
        check_shape(shape, where="x", max_elements=100)


def test_declared_size_is_checked_before_allocation() -> None:
    with pytest.raises(PayloadTooLarge, match="has 10000000000 elements; the limit is 100"):
        check_shape([100000, 100000], where="x", max_elements=100)
