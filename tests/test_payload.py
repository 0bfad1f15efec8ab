"""The hooks' strict checks: fields of exactly one type, numbers by the tensor protocols' rules."""

from __future__ import annotations

import numpy as np
import pytest

from modelfn import InvalidInput
from modelfn.payload import field, numbers


@pytest.mark.parametrize(
    ("payload", "kind", "message"),
    [
        ([], int, "must be a JSON object"),
        ({}, int, "'n' is missing"),
        ({"n": True}, int, "'n' must be an integer, got true or false"),
        ({"n": 1.0}, int, "'n' must be an integer, got a number"),
        ({"n": "1"}, float, "'n' must be a number, got a string"),
        ({"n": None}, str, "'n' must be a string, got null"),
    ],
)
def test_a_field_is_exactly_its_type(payload, kind, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        field(payload, "n", kind)


def test_a_field_passes_as_sent_and_may_have_a_default() -> None:
    assert field({"n": 3}, "n", int) == 3
    assert field({"n": 3}, "n", float) == 3  # an integer is a number
    assert field({}, "n", int, default=7) == 7


def test_numbers_take_a_shape_and_a_range() -> None:
    array = numbers([[1, 2], [3, 4]], "x", shape=(None, 2), low=0, high=4)
    assert array.dtype == np.float32 and array.shape == (2, 2)
    assert numbers([1, 2], "x", datatype="INT64").dtype == np.int64
    with pytest.raises(InvalidInput, match="x must be shaped Nx3, got 2x2"):
        numbers([[1, 2], [3, 4]], "x", shape=(None, 3))
    with pytest.raises(InvalidInput, match="x must be between 0 and 3"):
        numbers([[1, 2], [3, 4]], "x", low=0, high=3)
    with pytest.raises(InvalidInput, match="integers, got floating-point"):
        numbers([1.5], "x", datatype="INT64")
    with pytest.raises(InvalidInput, match="got true/false"):
        numbers([True, False], "x")
