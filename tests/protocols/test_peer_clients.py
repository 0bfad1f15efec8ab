"""The peers' own clients against a real server: the kserve SDK's REST client and MLServer's types.

Each client runs in its own environment (``make tools``: their pins clash with each other and with
the ML stack), through ``tests/protocols/peers/*_calls.py``, which names the peer test each case is
taken from. The server is one ``modelfn serve`` of a group holding the real digits model and small
ONNX models shaped as the peers' test models are (kserve's ``DummyModel`` echoes, MLServer's
``SumModel`` sums each row).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from helpers import DIGITS, ROOT, running
from models import write_graph_function, write_identity_function

PEERS = Path(__file__).parent / "peers"
MODELS = ["digits", "churn", "kserve-echo", "kserve-pair", "kserve-mixed", "sum-model", "mlserver-echo"]
CHURN = DIGITS.parent / "churn"
#: The rows kserve_calls.py sends the churn model, one column per input, as a DataFrame's columns.
CHURN_ROWS = [
    {"tenure": 12, "plan": "pro", "contract": "month-to-month", "monthly": 45.5},
    {"tenure": 40, "plan": "basic", "contract": "two-year", "monthly": None},
]


def write_peer_group(folder: Path) -> Path:
    from onnx import helper

    for source in (DIGITS, CHURN):
        ignored = shutil.ignore_patterns("__pycache__", ".modelfn", "train.py")
        shutil.copytree(source, folder / source.name, ignore=ignored)
    write_identity_function(folder / "kserve-echo", "kserve-echo", {"input-0": ("output-0", "INT32", [-1, 2])})
    write_identity_function(folder / "kserve-pair", "kserve-pair", {
        "input-0": ("output-0", "INT32", [-1, 2]), "fp16_data": ("fp16_out", "FP16", [-1, 2])})  # fmt: skip
    write_identity_function(folder / "kserve-mixed", "kserve-mixed", {
        "input1": ("output-0", "INT32", [-1]), "input2": ("output-1", "BYTES", [-1]),
        "input3": ("output-2", "FP16", [-1])})  # fmt: skip
    sums = [helper.make_node("Cast", ["input-0"], ["as_float"], to=1),
            helper.make_node("ReduceSum", ["as_float", "axes"], ["total"], keepdims=1),
            helper.make_node("Constant", [], ["axes"], value_ints=[1])]  # fmt: skip
    write_graph_function(folder / "sum-model", "sum-model", [sums[2], sums[0], sums[1]],
                         [("input-0", "INT32", [-1, -1])], [("total", "FP32", [-1, 1])], "Sums each row.")  # fmt: skip
    write_identity_function(folder / "mlserver-echo", "mlserver-echo", {
        "floats": ("floats_out", "FP64", [-1, 1]), "texts": ("texts_out", "BYTES", [-1, 1])})  # fmt: skip
    (folder / "main.py").write_text(
        f"from modelfn.adapters.gcf import http_function\n\nhandle = http_function(__file__, models={MODELS!r})\n"
    )
    return folder


@pytest.fixture(scope="module")
def peer_server(tmp_path_factory) -> Iterator[Any]:
    folder = write_peer_group(tmp_path_factory.mktemp("peers") / "group")
    # KServe's V1 client reads readiness from GET /v1/models/{name}, which TF Serving's body lacks.
    with running(folder, folder.parent / "serve.log", {"MODELFN_V1_MODEL_STATUS": "kserve"}) as server:
        # A readiness probe starts a model's load and answers 503 until it is done: wait, as a
        # platform's probes do, so the clients' own readiness calls see loaded models.
        deadline = time.monotonic() + 120
        for name in MODELS:
            while requests.get(f"{server.url}/v2/models/{name}/ready", timeout=60).status_code != 200:
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.1)
        yield server


def run_client(name: str, *args: str) -> dict[str, Any]:
    python = ROOT / ".tools" / name / "bin" / "python"
    if not python.is_file():
        pytest.fail(f"the {name} client is not installed: `make tools` installs it in .tools/{name}")
    done = subprocess.run([str(python), str(PEERS / f"{name}_calls.py"), *args],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def kserve(peer_server, heldout) -> dict[str, Any]:
    return run_client("kserve", peer_server.url, json.dumps(heldout[0][:3].tolist()), json.dumps(CHURN_ROWS))


@pytest.fixture(scope="module")
def mlserver(peer_server) -> dict[str, Any]:
    return run_client("mlserver", peer_server.url)


def value(results: dict[str, Any], case: str) -> Any:
    assert "value" in results[case], results[case]
    return results[case]["value"]


@pytest.mark.parametrize("case", ["v2_is_server_live", "v2_is_server_ready", "v2_is_model_ready", "v1_is_model_ready"])
def test_kserve_health_and_readiness(kserve, case) -> None:
    assert value(kserve, case) is True


def test_kserve_unknown_model_is_not_ready(kserve) -> None:
    assert value(kserve, "v2_is_model_ready_unknown") is False


@pytest.mark.parametrize("case", ["v2_infer_dict", "v2_infer_request"])
def test_kserve_v2_infer_echoes_the_id_and_the_tensor(kserve, case) -> None:
    """``test_infer`` (v2): ``outputs[0].data == [1, 2, 3, 4]`` and the request's id comes back."""
    answer = value(kserve, case)
    assert answer["id"] == "2ja0ls9j1309" and answer["model_name"] == "kserve-echo"
    assert answer["outputs"] == {"output-0": {"datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}}


@pytest.mark.parametrize("case", ["v2_infer_all_binary", "v2_infer_binary_output"])
def test_kserve_binary_inputs_and_outputs(kserve, case) -> None:
    """``test_infer_with_all_binary_data`` / ``test_infer_with_binary_data``: FP16 sent as binary data."""
    answer = value(kserve, case)
    assert answer["id"] == "2ja0ls9j1309"
    assert answer["outputs"]["output-0"]["data"] == [[1, 2], [3, 4]]
    if case == "v2_infer_binary_output":  # only output-0 was asked for
        assert set(answer["outputs"]) == {"output-0"}
        return
    fp16 = np.array([[1.1, 2.22], [3.345, 4.34343]], dtype=np.float16)
    assert answer["outputs"]["fp16_out"]["datatype"] == "FP16"
    assert np.array_equal(np.array(answer["outputs"]["fp16_out"]["data"], dtype=np.float16), fp16)


def test_kserve_mixed_binary_request_with_output_parameters(kserve) -> None:
    """``test_to_rest_with_mixed_binary_data``: JSON INT32, binary BYTES and FP16; two outputs asked for."""
    answer = value(kserve, "v2_infer_mixed_binary")
    assert answer["id"] == "4be4e82f-5500-420a-a5c5-ac86841e271b"
    assert set(answer["outputs"]) == {"output-0", "output-1"}  # only those asked for
    assert answer["outputs"]["output-0"] == {"datatype": "INT32", "shape": [3], "data": [1, 2, 3]}
    assert answer["outputs"]["output-1"]["datatype"] == "BYTES"
    assert answer["outputs"]["output-1"] == {"datatype": "BYTES", "shape": [1], "data": ["test"]}


def test_kserve_binary_digits_answer_equals_the_json_one(kserve, digits_client, heldout) -> None:
    """The real model through the SDK's binary path: the same scores and labels as a plain JSON request."""
    x = heldout[0][:3]
    tensor = {"name": "pixels", "shape": [3, 64], "datatype": "FP32", "data": x.ravel().tolist()}
    reference = {
        o["name"]: o
        for o in digits_client.post("/v2/models/digits/infer", json={"inputs": [tensor]}).get_json()["outputs"]
    }
    answer = value(kserve, "v2_infer_digits_binary")["outputs"]
    assert answer["label"]["data"] == reference["label"]["data"]
    assert np.allclose(np.ravel(answer["probabilities"]["data"]), reference["probabilities"]["data"], atol=1e-6)
    v1 = value(kserve, "v1_infer_digits")["predictions"]
    assert [row["label"] for row in v1] == reference["label"]["data"]


def test_kserve_v1_instances_and_inputs(kserve) -> None:
    """``test_infer`` (v1): rows answer ``predictions``; ``{"inputs": ...}`` TF Serving's columnar ``outputs``."""
    assert value(kserve, "v1_infer_instances") == {"predictions": [[1, 2], [3, 4]]}
    assert value(kserve, "v1_infer_inputs") == {"outputs": [[1, 2], [3, 4]]}


def test_kserve_sees_a_clear_error_for_an_unknown_input(kserve) -> None:
    failure = kserve["v2_infer_unknown_input"]
    assert failure["error"] == "HTTPStatusError" and failure["status"] == 400
    assert "unknown input(s) ['input-9']" in failure["message"]


@pytest.mark.parametrize("case", ["v2_infer_churn_columns", "v2_infer_churn_binary_strings"])
def test_kserve_one_input_per_column_gets_what_a_json_row_gets(kserve, peer_server, case) -> None:
    """A DataFrame's columns as the SDK sends them (shape ``[rows]``, strings JSON or binary): the
    churn pipeline's answers, as ``POST /predict`` gives them for the same rows."""
    reference = requests.post(f"{peer_server.url}/models/churn/predict", json={"rows": CHURN_ROWS}, timeout=60)
    assert reference.status_code == 200, reference.text
    answer = value(kserve, case)
    assert answer["model_name"] == "churn"
    assert answer["outputs"]["label"]["data"] == reference.json()["label"]
    assert np.allclose(answer["outputs"]["probabilities"]["data"], reference.json()["probabilities"], atol=1e-6)


def test_kserve_v1_row_objects_are_served_by_column_name(kserve, peer_server) -> None:
    reference = requests.post(f"{peer_server.url}/models/churn/predict", json={"rows": CHURN_ROWS}, timeout=60)
    predictions = value(kserve, "v1_infer_churn_rows")["predictions"]
    assert [p["label"] for p in predictions] == reference.json()["label"]


def test_kserve_is_told_which_column_holds_an_unknown_category(kserve) -> None:
    failure = kserve["v2_infer_churn_unknown_plan"]
    assert failure["error"] == "HTTPStatusError" and failure["status"] == 400, failure
    assert "column 'plan': unknown category 'gold'" in failure["message"]


@pytest.mark.parametrize("case", ["live", "ready", "model_ready"])
def test_mlserver_health_endpoints(mlserver, case) -> None:
    assert mlserver[case]["status"] == 200


def test_mlserver_metadata_validates_as_its_types(mlserver) -> None:
    """``test_metadata`` / ``test_model_metadata``: MLServer's response models accept both answers."""
    assert mlserver["metadata"]["status"] == 200 and mlserver["metadata"]["name"] == "modelfn"
    assert "binary_tensor_data" in mlserver["metadata"]["extensions"]
    model = mlserver["model_metadata"]
    assert model["name"] == "sum-model" and model["versions"] == ["1"] and model["platform"] == "onnx_onnxv1"
    assert model["inputs"] == [{"name": "input-0", "datatype": "INT32", "shape": [-1, -1]}]


@pytest.mark.parametrize("case", ["infer", "infer_version"])
def test_mlserver_inference_request_sums_to_six(mlserver, case) -> None:
    """``test_infer`` with ``inference-request.json`` (``[1, 2, 3]``): ``outputs[0].data == [6]``."""
    answer = mlserver[case]
    assert answer["status"] == 200 and answer["model_name"] == "sum-model"
    assert answer["outputs"] == {"total": {"datatype": "FP32", "shape": [1, 1], "data": [6.0]}}


def test_mlserver_unknown_model_version_is_404(mlserver) -> None:
    """``test_infer_error``: a model that is not served is a 404 naming it."""
    answer = mlserver["infer_error"]
    assert answer["status"] == 404 and "my-model" in answer["body"]["error"]


def test_mlserver_repository_index_with_every_field_dumped(mlserver) -> None:
    """``test_model_repository_index``: ``{"ready": null}``, as the type dumps it, lists every model."""
    index = mlserver["repository_index"]
    assert index["status"] == 200, index
    assert sorted(entry["name"] for entry in index["body"]) == sorted(MODELS)


def test_mlserver_codecs_round_trip(mlserver) -> None:
    """``test_codecs.py``'s values: NumpyCodec FP64 and StringCodec strings, encoded and decoded by MLServer."""
    answer = mlserver["codecs"]
    assert answer["status"] == 200, answer
    assert answer["decoded"] == {"floats_out": [[21.0]], "texts_out": ["hey", "what's", "up"]}
    assert answer["outputs"]["texts_out"]["shape"] == [3, 1]


def test_mlserver_request_codec_names_its_input_and_is_told_the_right_one(mlserver) -> None:
    answer = mlserver["request_codec"]
    assert answer["status"] == 400 and "the model takes ['input-0']" in answer["body"]["error"]
