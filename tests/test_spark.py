"""modelfn.spark.predict_udf on local Spark (a JVM, two task slots) against ``modelfn batch`` on one machine."""

from __future__ import annotations

import pytest
from batch_cases import (
    CHURN,
    EMBED,
    batch_here,
    results_of,
    write_churn_inputs,
    write_digits_inputs,
    write_embed_inputs,
    write_wide_function,
    write_wide_inputs,
)
from engines_env import run_script
from helpers import DIGITS, copy_function

from modelfn.registry import Registry

pytestmark = pytest.mark.slow  # one Spark session for the module: a JVM start, then every case


@pytest.fixture(scope="module")
def cases(tmp_path_factory, heldout):
    """Each case's inputs, ``modelfn batch``'s results on them, and Spark's rows for them, in one Spark run."""
    tmp = tmp_path_factory.mktemp("spark")
    inputs = write_digits_inputs(tmp / "inputs", heldout[0])
    wide = write_wide_function(tmp / "wide")
    parts = write_wide_inputs(tmp / "parts")
    registry = Registry.open(str(tmp / "registry"))
    registry.push(DIGITS)
    registry.promote("digits", "1", "prod")
    corrupt = copy_function(tmp)
    data = bytearray((corrupt / "model.onnx").read_bytes())
    data[-100] ^= 0xFF
    (corrupt / "model.onnx").write_bytes(bytes(data))

    write_churn_inputs(inputs)
    write_embed_inputs(inputs)
    batch_here(str(DIGITS), str(inputs / "digits.*"), "--output", str(tmp / "here"))
    batch_here(str(EMBED), str(inputs / "texts.jsonl"), "--output", str(tmp / "here"))
    batch_here(str(CHURN), str(inputs / "churn.csv"), "--output", str(tmp / "here"))
    batch_here(str(CHURN), str(CHURN / "validation.csv"), "--output", str(tmp / "here"))
    batch_here(str(wide), str(tmp / "parts" / "part-*.npy"), "--output", str(tmp / "here"))
    (tmp / "scratch").mkdir()
    config = {"scratch": str(tmp / "scratch"), "cases": [
        {"name": "json", "source": f"{registry.uri}/digits@prod", "folder": str(DIGITS), "kind": "json",
         "text": [str(inputs / "digits.jsonl")]},
        {"name": "csv", "source": str(DIGITS), "kind": "csv", "text": [str(inputs / "digits.csv")], "header": True},
        {"name": "tensor", "source": str(wide), "kind": "tensor", "npy": [str(p) for p in parts]},
        {"name": "churn", "source": str(CHURN), "kind": "columns", "table": [str(inputs / "churn.csv")],
         "columns": ["tenure", "plan", "contract", "monthly"]},
        {"name": "typed", "source": str(CHURN), "kind": "columns", "table": [str(CHURN / "validation.csv")],
         "columns": ["tenure", "plan", "contract", "monthly"], "infer": True},
        {"name": "corrupt", "source": str(corrupt), "kind": "json", "text": [str(inputs / "digits.jsonl")]},
        {"name": "embed", "source": str(EMBED), "kind": "json", "text": [str(inputs / "texts.jsonl")]},
    ]}  # fmt: skip
    return run_script("spark_job", config, tmp)["cases"], tmp / "here"


def spark_results(rows: list[list], file: str) -> tuple[dict[int, str], dict[int, str]]:
    mine = [r for r in rows if r[0] == file]
    predictions = {row: prediction for _, row, prediction, error in mine if error is None}
    errors = {row: error for _, row, prediction, error in mine if error is not None}
    assert all(prediction is None for _, _, prediction, error in mine if error is not None)
    return predictions, errors


def test_json_bodies_through_the_hooks_match_the_batch_job_row_for_row(cases) -> None:
    spark, here = cases
    predictions, errors = spark_results(spark["json"]["rows"], "digits.jsonl")
    assert (len(predictions), len(errors)) == (360, 2)
    assert (predictions, errors) == results_of(here, "digits.jsonl")


def test_texts_are_embedded_as_the_batch_job_embeds_them(cases) -> None:
    spark, here = cases
    predictions, errors = spark_results(spark["embed"]["rows"], "texts.jsonl")
    assert (len(predictions), len(errors)) == (132, 2)
    assert (predictions, errors) == results_of(here, "texts.jsonl")


def test_csv_lines_match_the_batch_job_with_the_same_error_rows(cases) -> None:
    spark, here = cases
    predictions, errors = spark_results(spark["csv"]["rows"], "digits.csv")
    assert errors == {51: "expected 64 numbers, got 3", 52: "NaN and infinite values are not accepted"}
    assert (predictions, errors) == results_of(here, "digits.csv")


def test_two_hundred_megabytes_of_tensor_rows_in_four_files_match_the_batch_job(cases) -> None:
    spark, here = cases
    rows = spark["tensor"]["rows"]
    assert len(rows) == 3200
    for part in range(4):
        predictions, errors = spark_results(rows, f"part-{part}.npy")
        assert (predictions, errors) == results_of(here, f"part-{part}.npy")
    assert spark_results(rows, "part-2.npy")[1] == {124: "NaN and infinite values are not accepted"}


def test_a_csv_of_customers_by_column_matches_the_batch_job_with_each_bad_cell_named(cases) -> None:
    spark, here = cases
    assert set(spark["churn"]["types"].values()) == {"string", "int"}  # every cell a string; the row numbers
    predictions, errors = spark_results(spark["churn"]["rows"], "churn.csv")
    assert len(predictions) == 1000
    mine, my_errors = results_of(here, "churn.csv")
    assert predictions == mine
    assert (
        {row: errors[row] for row in (101, 102, 103)}
        == {row: my_errors[row] for row in (101, 102, 103)}
        == {
            101: "column 'tenure': 'twelve' is not a number",
            102: "column 'plan': unknown category 'gold'; the model knows 'basic', 'family', 'pro'",
            103: "column 'tenure': null in the row; every row needs a value",
        }
    )
    # Spark's CSV reader fills a short line's missing cells with nulls, where the batch job counts cells.
    assert errors[104] == "column 'tenure': null in the row; every row needs a value"
    assert my_errors[104] == "expected 5 cells as in the header, got 2"


def test_typed_columns_with_nulls_are_predicted_as_the_batch_job_predicts_the_csv(cases) -> None:
    spark, here = cases
    assert "rows" in spark["typed"], spark["typed"]
    assert spark["typed"]["types"]["tenure"] == "int" and spark["typed"]["types"]["monthly"] == "double"
    predictions, errors = spark_results(spark["typed"]["rows"], "validation.csv")
    assert (len(predictions), errors) == (1000, {})
    assert predictions == results_of(here, "validation.csv")[0]


def test_a_corrupt_model_is_refused_on_the_driver_before_any_row(cases) -> None:
    spark, _ = cases
    assert "digest mismatch" in spark["corrupt"]["refused"]
    assert "rows" not in spark["corrupt"]
