"""The scikit-learn predictor with models trained in the test, served over real HTTP."""

from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from helpers import ROOT, running

from modelfn.contract import parse_contract
from modelfn.errors import ContractError

MAIN = "from modelfn.adapters.gcf import http_function\n\nhandle = http_function(__file__)\n"


def iris_function(folder: Path, fmt: str = "skops", *, pin: bool = True, estimator=None) -> tuple[Path, object]:
    """Train a small classifier here and write it as a function folder in ``fmt``."""
    import joblib
    import skops.io
    from sklearn.datasets import load_iris
    from sklearn.ensemble import GradientBoostingClassifier

    x, y = load_iris(return_X_y=True)
    model = estimator or GradientBoostingClassifier(n_estimators=20, random_state=0).fit(x.astype(np.float32), y)
    folder.mkdir(parents=True)
    artifact = folder / f"model.{ {'skops': 'skops', 'pickle': 'pkl', 'joblib': 'joblib'}[fmt] }"
    if fmt == "skops":
        artifact.write_bytes(skops.io.dumps(model))
    elif fmt == "pickle":
        artifact.write_bytes(pickle.dumps(model))
    else:
        joblib.dump(model, artifact)
    contract = {
        "name": "iris", "version": "1", "framework": "sklearn",
        "artifact": {
            "uri": artifact.name,
            **({"sha256": hashlib.sha256(artifact.read_bytes()).hexdigest()} if pin else {}),
            # Tree ensembles hold this type; skops asks the owner to trust it explicitly.
            **({"trusted_types": ["sklearn.tree._tree.Tree"]} if fmt == "skops" and estimator is None else {}),
        },
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}],
        "docs": {"description": "iris, trained in a test"},
    }  # fmt: skip
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    (folder / "main.py").write_text(MAIN)
    return folder, model


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["skops", "pickle", "joblib"])
def test_served_over_http_answers_as_scikit_learn_does(tmp_path, fmt) -> None:
    from sklearn.datasets import load_iris

    folder, model = iris_function(tmp_path / "iris", fmt)
    x = load_iris().data.astype(np.float32)
    with running(folder, tmp_path / "serve.log") as server:
        body = {
            "inputs": [{"name": "features", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
        }
        response = requests.post(f"{server.url}/v2/models/iris/infer", json=body, timeout=60)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}
    assert np.array_equal(outputs["label"], model.predict(x))
    assert np.abs(outputs["probabilities"] - model.predict_proba(x)).max() < 1e-6


@pytest.mark.parametrize("fmt", ["pickle", "joblib"])
def test_an_unpinned_pickle_is_refused_with_the_reason(tmp_path, fmt) -> None:
    folder, _ = iris_function(tmp_path / "iris", fmt, pin=False)
    with pytest.raises(ContractError, match=r"run code when they are loaded.*pins the exact bytes.*skops"):
        parse_contract((folder / "modelfn.yaml").read_text())


def test_every_artifact_needs_a_digest() -> None:
    text = yaml.safe_dump({"name": "m", "version": "1", "framework": "onnx", "artifact": {"uri": "m.onnx"},
                           "inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}],
                           "outputs": [{"name": "y", "datatype": "FP32", "shape": [1]}],
                           "docs": {"description": "d"}})  # fmt: skip
    with pytest.raises(ContractError, match="never loads bytes it has not verified"):
        parse_contract(text)


def test_skops_types_outside_the_defaults_must_be_trusted_explicitly(tmp_path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    x, y = load_iris(return_X_y=True)
    import operator

    # operator.neg is a callable skops does not trust by default (numpy ufuncs it does).
    model = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression(max_iter=500)).fit(x, y)
    folder, _ = iris_function(tmp_path / "iris", "skops", estimator=model)
    check = subprocess.run([sys.executable, "-m", "modelfn", "check", str(folder)], capture_output=True, text=True)
    assert check.returncode == 1
    assert "not trusted by default" in check.stderr and "_operator.neg" in check.stderr
    contract = yaml.safe_load((folder / "modelfn.yaml").read_text())
    contract["artifact"]["trusted_types"] = ["_operator.neg"]
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract))
    check = subprocess.run([sys.executable, "-m", "modelfn", "check", str(folder)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_outputs_must_map_to_estimator_methods(tmp_path) -> None:
    folder, _ = iris_function(tmp_path / "iris")
    contract = yaml.safe_load((folder / "modelfn.yaml").read_text())
    contract["outputs"][0]["name"] = "class"
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract))
    check = subprocess.run([sys.executable, "-m", "modelfn", "check", str(folder)], capture_output=True, text=True)
    assert check.returncode == 1 and "'label' (predict) or 'probabilities' (predict_proba)" in check.stderr


def test_a_pipeline_that_picks_columns_by_name_without_a_table_names_the_fix(tmp_path) -> None:
    """functions/churn's pipeline under a one-input contract: check says it wants a DataFrame, not that the warm-up
    failed."""
    import shutil

    folder = tmp_path / "churn"
    shutil.copytree(ROOT / "functions" / "churn", folder, ignore=shutil.ignore_patterns(".modelfn", "__pycache__"))
    contract = yaml.safe_load((folder / "modelfn.yaml").read_text())
    del contract["table"], contract["example"]
    contract["inputs"] = [{"name": "features", "datatype": "BYTES", "shape": [-1, 4]}]
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract))
    check = subprocess.run([sys.executable, "-m", "modelfn", "check", str(folder)], capture_output=True, text=True)
    assert check.returncode == 1 and "Traceback" not in check.stderr
    assert "fitted on a DataFrame with the columns ['tenure', 'plan', 'contract', 'monthly']" in check.stderr
    assert "under `table:`" in check.stderr and "warm-up" not in check.stderr


def test_a_pipeline_asked_for_label_and_probabilities_transforms_the_rows_once() -> None:
    """The churn pipeline's steps run once for both outputs; the answers are its own predict and predict_proba."""
    from modelfn.offline import ModelSource
    from modelfn.table import columns_of_rows

    model = ModelSource.of(str(ROOT / "functions" / "churn")).load()
    pipeline = model.predictor.estimator
    columns = pipeline.steps[0][1]
    transforms = []
    transform = columns.transform

    def counted(frame):
        transforms.append(len(frame))
        return transform(frame)

    customers = [(12, "pro", "month-to-month", 45.5), (40, "basic", "two-year", None), (3, "family", "one-year", 80.0)]
    rows = [dict(zip(("tenure", "plan", "contract", "monthly"), row, strict=True)) for row in customers]
    inputs = columns_of_rows(model.contract, rows)
    columns.transform = counted
    try:
        outputs = model.predictor.predict(inputs, ["label", "probabilities"])
    finally:
        del columns.transform
    assert transforms == [3]
    frame = model.predictor._table.features(inputs)
    assert np.array_equal(outputs["label"], pipeline.predict(frame))
    assert np.array_equal(outputs["probabilities"], pipeline.predict_proba(frame).astype(np.float32))


def test_a_string_column_the_pipeline_imputes_may_be_missing_on_every_route(tmp_path) -> None:
    """churn's customers with some plans unrecorded, a most-frequent imputer before the encoder: init
    makes `plan` nullable, and a null (JSON row, OIP column) or an empty CSV cell reaches the pipeline as
    the NaN pandas would read, with the answer the pipeline gives that DataFrame; convert refuses it."""
    import pandas as pd
    import skops.io
    from click.testing import CliRunner
    from conftest import make_client
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from modelfn.cli import cli

    frame = pd.read_csv(ROOT / "functions" / "churn" / "validation.csv")
    frame.loc[frame.index % 7 == 0, "plan"] = np.nan
    x, y = frame.drop(columns="label"), frame["label"]
    plans = make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="error"))
    columns = ColumnTransformer([("numbers", SimpleImputer(strategy="median"), ["tenure", "monthly"]),
                                 ("plans", plans, ["plan"]), ("terms", OneHotEncoder(), ["contract"])])  # fmt: skip
    model = Pipeline([("columns", columns), ("classifier", LogisticRegression(max_iter=1000))]).fit(x, y)
    (tmp_path / "model.skops").write_bytes(skops.io.dumps(model))
    row = {"tenure": 12, "plan": "pro", "contract": "month-to-month", "monthly": 45.5}
    (tmp_path / "row.json").write_text(__import__("json").dumps(row))
    runner, folder = CliRunner(), tmp_path / "plans"
    trusted = [f"--trust={kind}" for kind in skops.io.get_untrusted_types(data=(tmp_path / "model.skops").read_bytes())]
    written = runner.invoke(cli, ["init", str(tmp_path / "model.skops"), "--name", "plans", "--out", str(folder),
                                  "--example", str(tmp_path / "row.json"), *trusted])  # fmt: skip
    assert written.exit_code == 0, written.output
    contract = yaml.safe_load((folder / "modelfn.yaml").read_text())
    assert contract["table"] == {"as": "dataframe", "nullable": ["plan", "monthly"]}

    missing = {**row, "plan": None}
    expected = model.predict_proba(pd.DataFrame([{**row, "plan": np.nan}]))
    client = make_client(folder)
    answer = client.post("/predict", json=missing)
    assert answer.status_code == 200, answer.get_json()
    assert np.allclose(answer.get_json()["probabilities"], expected, atol=1e-6)
    datatypes = {"tenure": "INT64", "plan": "BYTES", "contract": "BYTES", "monthly": "FP64"}
    tensors = [{"name": n, "datatype": datatypes[n], "shape": [1, 1], "data": [v]} for n, v in missing.items()]
    oip = client.post("/v2/models/plans/infer", json={"inputs": tensors})
    assert oip.status_code == 200, oip.get_json()
    by_name = {output["name"]: output["data"] for output in oip.get_json()["outputs"]}
    assert np.allclose(by_name["probabilities"], expected.ravel(), atol=1e-6)
    assert client.post("/predict", json={**row, "contract": None}).status_code == 400  # not nullable

    (tmp_path / "in.csv").write_text("tenure,plan,contract,monthly\n12,,month-to-month,45.5\n12,pro,month-to-month,\n")
    done = subprocess.run([sys.executable, "-m", "modelfn", "batch", str(folder), str(tmp_path / "in.csv"),
                           "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert "2 rows, 2 predicted, 0 failed" in done.stdout, done.stdout + done.stderr
    first = (tmp_path / "out" / "in.csv.predictions.jsonl").read_text().splitlines()[0]
    assert np.allclose(__import__("json").loads(first)["prediction"]["probabilities"], expected.ravel(), atol=1e-6)

    refused = runner.invoke(cli, ["convert", str(folder), "--out", str(tmp_path / "onnx"),
                                  "--validation", str(ROOT / "functions" / "churn" / "validation.csv")])  # fmt: skip
    assert (
        refused.exit_code == 1
        and "columns ['plan']: an ONNX string tensor cannot hold a missing value" in refused.output
    )
