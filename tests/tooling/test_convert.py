"""modelfn convert on the cancer function: verified, reported, and nothing written when rejected."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_client
from helpers import ROOT, near_documented

from modelfn.contract import load_contract
from modelfn.tooling.convert import ConversionRejected, Thresholds, convert

CANCER = ROOT / "functions" / "cancer"


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("convert") / "cancer-onnx"
    return out, convert(CANCER, out)


def test_conversion_is_verified_and_reported(converted) -> None:
    out, report = converted
    assert report["outputs"]["label"]["agreement"] == 1.0
    assert report["outputs"]["probabilities"]["max_abs_diff"] < 1e-5
    assert report["accuracy"]["source"] == report["accuracy"]["converted"]  # both measured here
    documented = load_contract(CANCER).docs.metrics["heldout_accuracy"]
    assert near_documented(report["accuracy"]["source"], documented, report["validation_rows"])
    assert report["converted"]["bytes"] < report["source"]["bytes"]
    assert json.loads((out / "conversion-report.json").read_text()) == report
    assert sorted(p.name for p in out.iterdir()) == [
        "conversion-report.json", "main.py", "model.onnx", "modelfn.yaml", "validation.npz"
    ]  # fmt: skip


def test_the_converted_function_serves_the_same_answers(converted) -> None:
    out, _ = converted
    with np.load(CANCER / "validation.npz") as data:
        x = data["features"]
    body = {"inputs": [{"name": "features", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    source = make_client(CANCER).post("/v2/models/cancer/infer", json=body).get_json()
    onnx = make_client(out).post("/v2/models/cancer/infer", json=body).get_json()
    assert onnx["model_version"] == "1-onnx" and source["model_version"] == "1"
    assert source["outputs"][0]["data"] == onnx["outputs"][0]["data"]  # labels


def test_int8_quantization(tmp_path) -> None:
    report = convert(CANCER, tmp_path / "int8", quantize="int8")
    assert report["converted"]["version"] == "1-onnx-int8" and report["outputs"]["label"]["agreement"] == 1.0


def test_a_rejected_conversion_writes_nothing(tmp_path) -> None:
    out = tmp_path / "rejected"
    with pytest.raises(ConversionRejected, match=r"max abs difference .* > 0\.0"):
        convert(CANCER, out, thresholds=Thresholds(max_abs_diff=0.0, min_agreement=1.0))
    assert not out.exists() and not any(tmp_path.iterdir())


def test_the_offline_optimized_graph_drops_training_leftovers_and_answers_the_same(tmp_path) -> None:
    import onnx
    from models import write_training_graph_function

    source = write_training_graph_function(tmp_path / "trained")
    report = convert(source, tmp_path / "optimized", optimize=True)
    assert report["converted"]["version"] == "1-opt" and report["converted"]["optimized"] is True
    assert report["outputs"]["scores"]["max_abs_diff"] < 1e-5
    assert set(report["load_ms"]) == {"source", "converted"}
    before = [node.op_type for node in onnx.load(source / "model.onnx").graph.node]
    after = [node.op_type for node in onnx.load(tmp_path / "optimized" / "model.onnx").graph.node]
    assert {"Dropout", "Identity"} <= set(before) and not {"Dropout", "Identity"} & set(after)
    assert len(after) < len(before)  # MatMul + Add fused into Gemm


def test_quantized_and_optimized(tmp_path) -> None:
    report = convert(CANCER, tmp_path / "both", quantize="int8", optimize=True)
    assert report["converted"]["version"] == "1-onnx-int8-opt" and report["outputs"]["label"]["agreement"] == 1.0


def test_an_onnx_function_needs_quantize_or_optimize(tmp_path) -> None:
    from modelfn.errors import ContractError

    with pytest.raises(ContractError, match="already ONNX; pass --quantize int8 or --optimize"):
        convert(ROOT / "functions" / "digits", tmp_path / "x")


def test_a_pipeline_over_string_columns_is_refused_naming_why_and_never_with_a_traceback(tmp_path) -> None:
    """skl2onnx reads one float matrix; a model of strings used to fail deep inside it ("invalid literal for int()")."""
    from click.testing import CliRunner
    from tabular import GOOD, churn_function

    from modelfn.cli import cli

    folder = churn_function(tmp_path / "churn")
    np.savez(folder / "validation.npz", rows=np.array([GOOD] * 4, dtype=str))
    contract = folder / "modelfn.yaml"
    contract.write_text(contract.read_text() + "validation: validation.npz\n")
    done = CliRunner().invoke(cli, ["convert", str(folder), "--out", str(tmp_path / "onnx")])
    assert done.exit_code == 1, done.output
    assert "input 'rows' is BYTES [-1, 3]" in done.output and "one numeric feature matrix" in done.output
    assert done.exception is None or isinstance(done.exception, SystemExit)
    assert not (tmp_path / "onnx").exists()


CHURN = ROOT / "functions" / "churn"
ROW = {"tenure": 12, "plan": "pro", "contract": "month-to-month", "monthly": 45.5}


def test_a_table_pipeline_converts_to_one_onnx_input_per_column_verified_on_its_csv(tmp_path) -> None:
    """functions/churn's ColumnTransformer pipeline: an ONNX model with the contract's own four columns,
    verified on the held-out CSV (``--validation``), that answers as the pipeline does and refuses a
    category its encoder never saw naming the column, though ONNX's encoder cannot say which value it refused."""
    import onnxruntime as ort
    from click.testing import CliRunner

    from modelfn.cli import cli

    out = tmp_path / "churn-onnx"
    done = CliRunner().invoke(cli, ["convert", str(CHURN), "--out", str(out),
                                    "--validation", str(CHURN / "validation.csv")])  # fmt: skip
    assert done.exit_code == 0, done.output
    report = json.loads((out / "conversion-report.json").read_text())
    assert report["validation_rows"] == 1000 and report["outputs"]["label"]["agreement"] == 1.0
    assert report["accuracy"]["source"] == report["accuracy"]["converted"] > 0.8
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [
        ("tenure", "tensor(int64)"), ("plan", "tensor(string)"), ("contract", "tensor(string)"),
        ("monthly", "tensor(double)")]  # fmt: skip
    contract = load_contract(out)
    assert contract.framework == "onnx" and contract.table is not None and contract.table.pass_as == "arrays"
    assert contract.table.categories["plan"] == ["basic", "family", "pro"]
    source, onnx_form = make_client(CHURN), make_client(out)
    rows = {"rows": [ROW, {**ROW, "monthly": None, "contract": "two-year"}]}
    expected = source.post("/predict", json=rows).get_json()
    answer = onnx_form.post("/predict", json=rows).get_json()
    assert answer["label"] == expected["label"]
    assert np.allclose(answer["probabilities"], expected["probabilities"], atol=1e-5)
    datatypes = {"tenure": "INT64", "plan": "BYTES", "contract": "BYTES", "monthly": "FP64"}
    gold = [{"name": name, "datatype": datatypes[name], "shape": [1, 1], "data": [value]}
            for name, value in {**ROW, "plan": "gold"}.items()]  # fmt: skip
    refused = onnx_form.post("/v2/models/churn/infer", json={"inputs": gold})
    assert refused.status_code == 400 and "column 'plan': unknown category 'gold'" in refused.get_json()["error"]


def test_a_step_skl2onnx_cannot_convert_is_named(tmp_path) -> None:
    """A pipeline with a custom function step: the error names the step, with no traceback, and nothing is written."""
    import shutil

    import skops.io
    import yaml
    from click.testing import CliRunner
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    from modelfn.cli import cli

    folder = tmp_path / "churn"
    shutil.copytree(CHURN, folder, ignore=shutil.ignore_patterns(".modelfn", "__pycache__", "train.py"))
    frame = __import__("pandas").read_csv(CHURN / "validation.csv")
    columns = ColumnTransformer([("numbers", FunctionTransformer(np.log1p), ["tenure"]),
                                 ("categories", OneHotEncoder(), ["plan", "contract"])])  # fmt: skip
    model = Pipeline([("columns", columns), ("classifier", LogisticRegression())])
    model.fit(frame[["tenure", "plan", "contract", "monthly"]], frame["label"])
    data = skops.io.dumps(model)
    (folder / "model.skops").write_bytes(data)
    contract = yaml.safe_load((folder / "modelfn.yaml").read_text())
    contract["artifact"]["sha256"] = __import__("hashlib").sha256(data).hexdigest()
    contract["artifact"]["trusted_types"] = [t for t in skops.io.get_untrusted_types(data=data)]
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    done = CliRunner().invoke(cli, ["convert", str(folder), "--out", str(tmp_path / "onnx")])
    assert done.exit_code == 1, done.output
    assert "(step columns.numbers: FunctionTransformer)" in done.output and "Traceback" not in done.output
    assert not (tmp_path / "onnx").exists()


def test_a_lightgbm_pipeline_on_a_dataframe_is_served_as_trained_and_converted(tmp_path) -> None:
    """A ColumnTransformer (median imputer, one-hot encoder) and a LightGBM classifier, fitted on churn's
    generated customers: served as it is (skops, LightGBM's types trusted), then converted with
    onnxmltools' converter and verified on the held-out CSV; the ONNX form answers as the booster does.
    (No scaler: trees do not need one, and the ONNX graph computes in float, so a scaled value may fall
    on the other side of a split; convert would then refuse, naming the difference.)"""
    import hashlib
    import importlib.util
    import shutil

    import pandas as pd
    import skops.io
    import yaml
    from click.testing import CliRunner
    from lightgbm import LGBMClassifier
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from modelfn.cli import cli

    spec = importlib.util.spec_from_file_location("churn_train", CHURN / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    x_train, _, y_train, _ = train.split()
    numbers = ("numbers", SimpleImputer(strategy="median"), ["tenure", "monthly"])
    columns = ColumnTransformer([numbers, ("categories", OneHotEncoder(handle_unknown="error"), ["plan", "contract"])])
    booster = LGBMClassifier(n_estimators=60, num_leaves=15, random_state=0, verbose=-1)
    model = Pipeline([("columns", columns), ("classifier", booster)])
    model.fit(x_train, y_train)
    folder = tmp_path / "churn-lgbm"
    shutil.copytree(CHURN, folder, ignore=shutil.ignore_patterns(".modelfn", "__pycache__", "train.py"))
    data = skops.io.dumps(model)
    (folder / "model.skops").write_bytes(data)
    contract = yaml.safe_load((folder / "modelfn.yaml").read_text())
    contract["artifact"] = {"uri": "model.skops", "sha256": hashlib.sha256(data).hexdigest(),
                            "trusted_types": skops.io.get_untrusted_types(data=data)}  # fmt: skip
    assert "lightgbm.sklearn.LGBMClassifier" in contract["artifact"]["trusted_types"]
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))

    heldout = pd.read_csv(CHURN / "validation.csv")
    rows = [{k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items() if k != "label"}
            for row in heldout.head(100).to_dict("records")]  # fmt: skip
    served = make_client(folder).post("/predict", json={"rows": rows})
    assert served.status_code == 200, served.get_json()
    frame = heldout.drop(columns="label").head(100)
    assert served.get_json()["label"] == model.predict(frame).tolist()
    assert np.allclose(served.get_json()["probabilities"], model.predict_proba(frame), atol=1e-6)

    out = tmp_path / "churn-lgbm-onnx"
    done = CliRunner().invoke(cli, ["convert", str(folder), "--out", str(out)])
    assert done.exit_code == 0, done.output
    report = json.loads((out / "conversion-report.json").read_text())
    assert report["validation_rows"] == 1000 and report["outputs"]["label"]["agreement"] >= 0.99
    assert report["outputs"]["probabilities"]["max_abs_diff"] < 1e-3
    converted = make_client(out).post("/predict", json={"rows": rows}).get_json()
    assert np.mean(np.array(converted["label"]) == served.get_json()["label"]) >= 0.99
    assert np.allclose(converted["probabilities"], served.get_json()["probabilities"], atol=1e-3)
