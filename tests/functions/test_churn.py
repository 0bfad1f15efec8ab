"""functions/churn: a pipeline fitted on a DataFrame with named, mixed-type columns, served as it was trained.

One ``modelfn serve`` process of the example, over real connections: a row as a person writes it on
every route, MLServer's own pandas codec, the held-out rows answered exactly as the pipeline itself
answers them, and a bad value refused with a 400 naming the column on every route.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from helpers import ROOT, copy_function, running

pytestmark = pytest.mark.slow
CHURN = ROOT / "functions" / "churn"
ROW = {"tenure": 12, "plan": "pro", "contract": "month-to-month", "monthly": 45.5}
#: (what is wrong, the row, what the error must say)
BAD_ROWS = [
    ("a word for a number", {**ROW, "tenure": "twelve"}, "'tenure'"),
    ("a category never seen", {**ROW, "plan": "gold"}, "column 'plan': unknown category 'gold'"),
    ("a fraction for an integer", {**ROW, "tenure": 12.5}, "'tenure'"),
    ("a number for a string", {**ROW, "contract": 12}, "'contract'"),
]


def held_out_rows() -> tuple[list[dict[str, Any]], list[int]]:
    """validation.csv as rows of the contract's columns (an empty charge is null), and the labels."""
    rows, labels = [], []
    with (CHURN / "validation.csv").open(newline="") as file:
        for record in csv.DictReader(file):
            monthly = record["monthly"]
            rows.append({"tenure": int(record["tenure"]), "plan": record["plan"], "contract": record["contract"],
                         "monthly": float(monthly) if monthly else None})  # fmt: skip
            labels.append(int(record["label"]))
    return rows, labels


def local_pipeline() -> Any:
    import skops.io

    return skops.io.load(CHURN / "model.skops", trusted=["numpy.dtype"])


def local_frame(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["tenure", "plan", "contract", "monthly"])
    frame["monthly"] = frame["monthly"].astype("float64")
    return frame


@pytest.fixture(scope="module")
def churn_server(tmp_path_factory):
    folder = copy_function(tmp_path_factory.mktemp("churn"), CHURN)
    with running(folder, folder.parent / "serve.log") as server:
        yield server


def oip_columns(rows: list[dict[str, Any]], shape_of=lambda n: [n, 1]) -> dict[str, Any]:
    datatypes = {"tenure": "INT64", "plan": "BYTES", "contract": "BYTES", "monthly": "FP64"}
    return {"inputs": [{"name": name, "datatype": datatype, "shape": shape_of(len(rows)),
                        "data": [row[name] for row in rows]} for name, datatype in datatypes.items()]}  # fmt: skip


def flat(rows: int) -> list[int]:
    return [rows]


def test_a_row_as_a_person_writes_it_is_answered_on_every_route(churn_server) -> None:
    url = churn_server.url
    rows = [ROW, {**ROW, "contract": "two-year", "tenure": 60, "monthly": None}]
    expected = local_pipeline().predict_proba(local_frame(rows)).astype(np.float32)
    answers = {
        "predict, one row": requests.post(f"{url}/predict", json=ROW, timeout=60),
        "predict, rows": requests.post(f"{url}/predict", json={"rows": rows}, timeout=60),
        "OIP, [rows, 1]": requests.post(f"{url}/v2/models/churn/infer", json=oip_columns(rows), timeout=60),
        "OIP, [rows]": requests.post(f"{url}/v2/models/churn/infer", json=oip_columns(rows, flat), timeout=60),
        "TF Serving, instances": requests.post(f"{url}/v1/models/churn:predict", json={"instances": rows}, timeout=60),
        "TF Serving, columns": requests.post(
            f"{url}/v1/models/churn:predict",
            json={"inputs": {name: [row[name] for row in rows] for name in ROW}},
            timeout=60,
        ),
    }
    for route, answer in answers.items():
        assert answer.status_code == 200, (route, answer.text)
    one = answers["predict, one row"].json()
    assert one["label"] == [1] and np.allclose(one["probabilities"], expected[:1], atol=1e-6)
    assert np.allclose(answers["predict, rows"].json()["probabilities"], expected, atol=1e-6)
    for route in ("OIP, [rows, 1]", "OIP, [rows]"):
        outputs = {o["name"]: o for o in answers[route].json()["outputs"]}
        assert np.allclose(np.reshape(outputs["probabilities"]["data"], (2, 2)), expected, atol=1e-6), route
    predictions = answers["TF Serving, instances"].json()["predictions"]
    assert np.allclose([p["probabilities"] for p in predictions], expected, atol=1e-6)
    columnar = answers["TF Serving, columns"].json()["outputs"]  # the second row's monthly is null
    assert np.allclose(columnar["probabilities"], expected, atol=1e-6)


def test_the_held_out_rows_are_answered_as_the_pipeline_answers_them(churn_server) -> None:
    rows, labels = held_out_rows()
    answer = requests.post(f"{churn_server.url}/predict", json={"rows": rows}, timeout=120)
    assert answer.status_code == 200, answer.text
    served = np.array(answer.json()["label"])
    pipeline = local_pipeline()
    own = pipeline.predict(local_frame(rows))
    assert (served == own).all()
    # The accuracy the contract records is this machine's own measure of the same pipeline.
    accuracy = float((served == np.array(labels)).mean())
    assert math.isclose(accuracy, pipeline.score(local_frame(rows), labels))
    assert accuracy > 0.8 and len(rows) == 1000  # well above always answering "stayed" (0.671)


def test_a_bad_value_is_a_400_naming_the_column_on_every_route(churn_server) -> None:
    url = churn_server.url
    send = {
        "predict": lambda row: requests.post(f"{url}/predict", json=row, timeout=60),
        "oip": lambda row: requests.post(f"{url}/v2/models/churn/infer", json=_loose_oip(row), timeout=60),
        "tfserving": lambda row: requests.post(f"{url}/v1/models/churn:predict", json={"instances": [row]}, timeout=60),
        "tfserving columns": lambda row: requests.post(
            f"{url}/v1/models/churn:predict", json={"inputs": {k: [v] for k, v in row.items()}}, timeout=60
        ),
    }
    for route, post in send.items():
        for what, row, named in BAD_ROWS:
            answer = post(row)
            assert answer.status_code == 400, (route, what, answer.text)
            assert named in answer.json()["error"], (route, what, answer.json())
        missing = post({k: v for k, v in ROW.items() if k != "plan"})
        assert missing.status_code == 400 and "'plan'" in missing.json()["error"], (route, missing.text)
        assert post(ROW).status_code == 200, route  # the worker lives on
    assert "Traceback" not in churn_server.log()


def _loose_oip(row: dict[str, Any]) -> dict[str, Any]:
    """A one-row OIP request with the declared datatypes and whatever values ``row`` has."""
    datatypes = {"tenure": "INT64", "plan": "BYTES", "contract": "BYTES", "monthly": "FP64"}
    return {"inputs": [{"name": name, "datatype": datatypes[name], "shape": [1, 1], "data": [value]}
                       for name, value in row.items()]}  # fmt: skip


def test_mlservers_pandas_codec_request_is_answered(churn_server) -> None:
    python = ROOT / ".tools" / "mlserver" / "bin" / "python"
    if not python.is_file():
        pytest.fail("MLServer is not installed: `make tools` installs it in .tools/mlserver")
    rows = [ROW, {**ROW, "plan": "family", "monthly": None}, {**ROW, "contract": "one-year", "tenure": 30}]
    script = Path(__file__).parent / "peers" / "mlserver_churn.py"
    done = subprocess.run([str(python), str(script), f"{churn_server.url}/v2/models/churn/infer", json.dumps(rows)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == 200, result
    sent = {tensor["name"]: tensor for tensor in result["request"]["inputs"]}
    assert sent["plan"]["shape"] == [3, 1] and sent["plan"]["datatype"] == "BYTES"  # the codec's own layout
    assert sent["monthly"]["data"][1] is None  # NaN travels as null
    expected = local_pipeline().predict_proba(local_frame(rows))
    assert np.allclose(result["probabilities"], expected, atol=1e-6)
    assert result["label"] == local_pipeline().predict(local_frame(rows)).tolist()


def test_modelfn_batch_maps_csv_columns_by_header_and_json_lines_by_key(tmp_path) -> None:
    """The held-out CSV as it is (a label column beside the four), and the same rows as JSON Lines, with one
    bad row each: the same predictions as the pipeline's own, the bad row refused naming its column."""
    rows, _ = held_out_rows()
    lines = (CHURN / "validation.csv").read_text().splitlines()
    lines.insert(3, "twelve,pro,month-to-month,45.5,0")  # line 4
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    as_json = [json.dumps(row) for row in rows]
    as_json.insert(3, json.dumps({**ROW, "plan": "gold"}))
    (tmp_path / "rows.jsonl").write_text("\n".join(as_json) + "\n")
    own = local_pipeline().predict(local_frame(rows)).tolist()
    for name in ("rows.csv", "rows.jsonl"):
        command = [sys.executable, "-m", "modelfn", "batch", str(CHURN), str(tmp_path / name), "--output",
                   str(tmp_path / "out")]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        predictions = [json.loads(line) for line in (tmp_path / "out" / f"{name}.predictions.jsonl").open()]
        assert [p["prediction"]["label"] for p in predictions] == own, name
        errors = [json.loads(line) for line in (tmp_path / "out" / f"{name}.errors.jsonl").open()]
        assert [e["row"] for e in errors] == [4], (name, errors)
        assert ("'tenure'" if name == "rows.csv" else "column 'plan': unknown category 'gold'") in errors[0]["error"]


def test_grpc_takes_a_column_per_input_and_names_a_bad_one(tmp_path) -> None:
    """Triton's own gRPC client, one InferInput per column: the pipeline's answer, and INVALID_ARGUMENT naming a
    category it never saw."""
    import tritonclient.grpc as triton
    from grpc_servers import GrpcServer
    from tritonclient.utils import InferenceServerException

    def tensors(row: dict[str, Any]) -> list[Any]:
        made = []
        for name, datatype, dtype in (("tenure", "INT64", np.int64), ("plan", "BYTES", object),
                                      ("contract", "BYTES", object), ("monthly", "FP64", np.float64)):  # fmt: skip
            tensor = triton.InferInput(name, [1, 1], datatype)
            tensor.set_data_from_numpy(np.array([[row[name]]], dtype=dtype))
            made.append(tensor)
        return made

    server = GrpcServer(copy_function(tmp_path, CHURN), tmp_path / "grpc.log", {})
    try:
        server.wait_live()
        client = triton.InferenceServerClient(server.address)
        answer = client.infer("churn", tensors(ROW), client_timeout=60)
        expected = local_pipeline().predict_proba(local_frame([ROW]))
        assert np.allclose(answer.as_numpy("probabilities"), expected, atol=1e-6)
        with pytest.raises(InferenceServerException) as refused:
            client.infer("churn", tensors({**ROW, "plan": "gold"}), client_timeout=60)
        assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "column 'plan': unknown category 'gold'" in refused.value.message()
    finally:
        server.stop()
