"""Tabular contracts (``table:``): what a contract may declare, and rows and OIP columns read as the model's columns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from helpers import ROOT

from modelfn.contract import parse_contract
from modelfn.errors import ContractError, InvalidInput
from modelfn.table import columns_from_rows, columns_of_rows, normalize_oip_inputs, with_column_shapes

CHURN = yaml.safe_load((ROOT / "functions" / "churn" / "modelfn.yaml").read_text())
ROW = {"tenure": 12, "plan": "pro", "contract": "month-to-month", "monthly": 45.5}


def churn_contract(**changes):
    data = {**CHURN, **changes}
    return parse_contract(yaml.safe_dump({k: v for k, v in data.items() if v is not None}))


def test_the_churn_contract_declares_its_columns() -> None:
    contract = churn_contract()
    assert contract.table is not None and contract.table.pass_as == "dataframe"
    assert [spec.name for spec in contract.inputs] == ["tenure", "plan", "contract", "monthly"]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}], "table": {}}, "shape [-1] or [-1, 1]"),
        ({"table": {"nullable": ["tenure"]}}, "'tenure' is INT64; only float columns"),
        ({"table": {"as": "arrays", "nullable": ["plan"]}}, "for a DataFrame, string columns"),
        ({"table": {"nullable": ["age"]}}, "'age', which is not an input"),
        ({"table": {"as": "rows"}}, "table.as"),
        ({"table": {"columns": []}}, "field `table`: object contains unknown field `columns`"),
    ],
)
def test_an_invalid_table_names_the_field(changes: dict, expected: str) -> None:
    with pytest.raises(ContractError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        churn_contract(**changes)


def test_one_row_or_rows_become_columns_of_the_declared_shape() -> None:
    contract = churn_contract()
    one = columns_from_rows(contract, ROW)
    assert one["tenure"].shape == (1, 1) and one["tenure"].dtype == np.int64
    assert one["plan"].tolist() == [["pro"]]
    many = columns_from_rows(contract, {"rows": [ROW, {**ROW, "monthly": None}]})
    assert many["monthly"].dtype == np.float64 and math.isnan(many["monthly"][1, 0])
    assert columns_of_rows(contract, [ROW, ROW])["contract"].shape == (2, 1)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({**ROW, "tenure": "twelve"}, "column 'tenure': INT64 data must be numbers"),
        ({**ROW, "plan": None}, "column 'plan': null in the row"),
        ({k: v for k, v in ROW.items() if k != "contract"}, "column 'contract': missing in the row"),
        ({**ROW, "age": 3}, "unknown column(s) ['age']"),
        ({**ROW, "plan": 3}, "column 'plan': values must be strings, got int"),
        ({"rows": [ROW, "x"]}, "rows[1] must be an object"),
        ({"rows": [ROW], "extra": 1}, "beside `rows` the body has ['extra']"),
        ({"rows": []}, "`rows` must be a non-empty list"),
        ([ROW], "the row must be an object"),
    ],
)
def test_a_bad_row_names_the_column_and_the_row(payload, expected: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        columns_from_rows(churn_contract(), payload)
    assert expected in refused.value.message


def test_oip_columns_take_the_declared_rank_and_null_is_nan_where_nullable() -> None:
    contract = churn_contract()
    raw = [{"name": "tenure", "shape": [2], "datatype": "INT64", "data": [1, 2]},
           {"name": "monthly", "shape": [2, 1], "datatype": "FP64", "data": [None, 3.5]},
           {"name": "plan", "shape": [2, 2], "datatype": "BYTES", "data": ["a"] * 4}]  # fmt: skip
    tenure, monthly, plan = normalize_oip_inputs(contract, raw)
    assert tenure["shape"] == [2, 1] and monthly["shape"] == [2, 1]
    assert math.isnan(monthly["data"][0]) and plan["shape"] == [2, 2]  # left for the usual checks to refuse
    assert raw[0]["shape"] == [2]  # the request document itself is not changed
    flat = with_column_shapes(contract, {"tenure": np.array([1, 2]), "plan": np.array([["a"], ["b"]], dtype=object)})
    assert flat["tenure"].shape == (2, 1) and flat["plan"].shape == (2, 1)


def test_columns_as_lists_take_nulls_where_nullable_and_name_what_is_wrong() -> None:
    from modelfn.table import columns_of_lists

    contract = churn_contract()
    columns = {
        "tenure": [12, 40],
        "plan": ["pro", "basic"],
        "contract": ["one-year", "two-year"],
        "monthly": [[1.5], [None]],
    }
    arrays = columns_of_lists(contract, columns)
    assert arrays["monthly"].shape == (2, 1) and math.isnan(arrays["monthly"][1, 0])
    for changed, expected in [
        ({"tenure": [12, None]}, "column 'tenure': null in row 1"),
        ({"plan": ["pro"]}, "different lengths [1, 2]"),
        ({"age": [1, 2]}, "unknown column(s) ['age']"),
        ({"tenure": 12}, "column 'tenure': a list of values"),
    ]:
        with pytest.raises(InvalidInput) as refused:
            columns_of_lists(contract, {**columns, **changed})
        assert expected in refused.value.message
