"""Property-based tests (hypothesis) of the tensor codecs and the JSON limits.

For any array of any datatype: JSON and binary encodings decode to the same array.
For any bytes or JSON value: decoding either succeeds or raises a modelfn client error
(a clear 4xx), never anything else. The JSON extent check agrees with a reference
computed on the parsed document.
"""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from modelfn.datatypes import NUMPY_DTYPES
from modelfn.errors import ClientError
from modelfn.http import check_json_extent
from modelfn.protocols import binary
from modelfn.tensors import check_shape, datatype_of, to_array, to_json_data

NUMERIC = [datatype for datatype in NUMPY_DTYPES if datatype != "BYTES"]
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    datatype = draw(st.sampled_from([*NUMERIC, "BYTES"]))
    shape = draw(SHAPES)
    if datatype == "BYTES":
        items = draw(st.lists(st.text(max_size=8), min_size=math.prod(shape), max_size=math.prod(shape)))
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return array.reshape(shape)
    # Finite floats: JSON has no NaN or infinity (orjson writes them as null, which is refused).
    elements = {"allow_nan": False, "allow_infinity": False} if datatype.startswith("FP") else {}
    return draw(hnp.arrays(np.dtype(NUMPY_DTYPES[datatype]), shape, elements=elements or None))


@PROPERTY
@given(arrays())
def test_json_encoding_round_trips_every_array(array: np.ndarray) -> None:
    datatype = datatype_of(array)
    data = orjson.loads(orjson.dumps(to_json_data(array), option=orjson.OPT_SERIALIZE_NUMPY))
    decoded = to_array(data, datatype, where="x", shape=check_shape(list(array.shape), where="x", max_elements=1 << 20))
    assert decoded.shape == array.shape and datatype_of(decoded) == datatype
    if datatype == "FP16":  # written as the float it is, read back exactly
        np.testing.assert_array_equal(decoded, array)
    else:
        assert decoded.tolist() == array.tolist()


@PROPERTY
@given(arrays())
def test_binary_encoding_round_trips_every_array(array: np.ndarray) -> None:
    datatype = datatype_of(array)
    decoded = binary.decode(memoryview(binary.encode(array)), datatype, array.shape, "x")
    assert decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=30,
)


@PROPERTY
@given(JSON, st.sampled_from(list(NUMPY_DTYPES)), st.lists(st.integers(-2, 70), max_size=4) | JSON)
def test_any_json_either_decodes_or_is_a_client_error(data, datatype, shape) -> None:
    try:
        checked = check_shape(shape, where="x", max_elements=1 << 16)
        array = to_array(data, datatype, where="x", shape=checked)
    except ClientError:
        return
    assert array.shape == checked and datatype_of(array) == datatype


@PROPERTY
@given(st.binary(max_size=64), st.sampled_from(list(NUMPY_DTYPES)), st.lists(st.integers(0, 9), max_size=3))
def test_any_bytes_either_decode_or_are_a_client_error(chunk: bytes, datatype: str, shape: list[int]) -> None:
    try:
        array = binary.decode(memoryview(chunk), datatype, shape, "x")
    except ClientError:
        return
    assert list(array.shape) == shape


def _reference_extent(value) -> tuple[int, int]:
    """(nesting depth, longest string in bytes as JSON writes it) of a parsed document."""
    if isinstance(value, list):
        inner = [_reference_extent(v) for v in value]
        return 1 + max((d for d, _ in inner), default=0), max((s for _, s in inner), default=0)
    if isinstance(value, dict):
        inner = [_reference_extent(v) for v in value.values()]
        keys = max((len(json.dumps(k, ensure_ascii=False).encode()) - 2 for k in value), default=0)
        return 1 + max((d for d, _ in inner), default=0), max([keys, *(s for _, s in inner)])
    if isinstance(value, str):
        return 0, len(json.dumps(value, ensure_ascii=False).encode()) - 2
    return 0, 0


STRINGY = st.recursive(
    st.integers() | st.text(alphabet=st.sampled_from('ab"\\[]{}é\n'), max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=2),
    max_leaves=20,
)


@PROPERTY
@given(STRINGY, st.integers(0, 8), st.integers(0, 20))
def test_the_raw_extent_check_agrees_with_the_parsed_document(value, max_depth: int, max_string: int) -> None:
    body = json.dumps(value, ensure_ascii=False).encode()
    depth, longest = _reference_extent(value)
    try:
        check_json_extent(body, max_depth, max_string)
    except ClientError as exc:
        assert depth > max_depth or longest > max_string, exc.message
    else:
        assert depth <= max_depth and longest <= max_string


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"[" * 40 + b"]" * 40, 400, "nests 40 levels deep; the limit is 32"),
        (b'{"a": "' + b"x" * 70_000 + b'"}', 413, "a string in the body is 70000 bytes"),
        (b'{"a": "' + b"[" * 100 + b'"}', None, None),  # brackets inside a string are not nesting
        (b'["\\\\", [[[[["\\""]]]]]]', None, None),  # escapes do not end or start strings
    ],
)
def test_nesting_and_string_limits(body: bytes, status, message) -> None:
    if status is None:
        check_json_extent(body, 32, 65536)
        check_json_extent(body, 7, 65536)
        return
    with pytest.raises(ClientError, match=message) as caught:
        check_json_extent(body, 32, 65536)
    assert caught.value.status == status
