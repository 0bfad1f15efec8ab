"""A value the contract admits but the model cannot take is the caller's to fix: 400 naming it, never 500.

A churn model trained here as people train one (a scikit-learn pipeline: ``StandardScaler`` on the
number columns, ``OneHotEncoder`` on the plan) takes its rows as strings (a BYTES input). ``"twelve"``
for a number and ``"gold"`` for a plan pass the contract's checks (they are strings) and then fail
inside scikit-learn's input checks: every protocol answers 4xx naming the input, over real
connections (a functions-framework server, and a gRPC server with Triton's client). ONNX Runtime's
``INVALID_ARGUMENT`` on a value (a token id past the vocabulary) is answered the same way. A model's
own failure stays a 500 with a generic body.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as triton
from conftest import make_client
from grpc_servers import GrpcServer
from helpers import running
from models import write_graph_function
from tabular import GOOD, churn_function
from tritonclient.utils import InferenceServerException

from modelfn.runtime.predictors.sklearn import refuses_the_input

pytestmark = pytest.mark.slow
#: (row, what the error must name)
BAD_VALUES = [(["twelve", "pro", "29.5"], "could not convert string to float: 'twelve'"),
              (["12", "gold", "29.5"], "unknown categories ['gold']")]  # fmt: skip


@pytest.fixture(scope="module")
def churn(tmp_path_factory) -> Path:
    return churn_function(tmp_path_factory.mktemp("churn") / "churn")


def test_every_rest_route_answers_400_naming_the_value(churn, tmp_path) -> None:
    with running(churn, tmp_path / "serve.log") as server, requests.Session() as http:
        routes = {
            "simple": lambda row: http.post(f"{server.url}/predict", json={"rows": [row]}, timeout=60),
            "oip": lambda row: http.post(
                f"{server.url}/v2/models/churn/infer",
                json={"inputs": [{"name": "rows", "datatype": "BYTES", "shape": [1, 3], "data": row}]},
                timeout=60,
            ),
            "tfserving": lambda row: http.post(
                f"{server.url}/v1/models/churn:predict", json={"instances": [row]}, timeout=60
            ),
        }
        for route, send in routes.items():
            assert send(GOOD).status_code == 200, route
            for row, named in BAD_VALUES:
                answer = send(row)
                assert answer.status_code == 400, (route, row, answer.text)
                assert "input 'rows'" in answer.json()["error"] and named in answer.json()["error"], route
            assert send(GOOD).status_code == 200, route  # the worker lives on
        log = server.log()
    assert "Traceback" not in log and "refused its input" in log


def test_grpc_answers_invalid_argument_naming_the_value(churn, tmp_path) -> None:
    server = GrpcServer(churn, tmp_path / "grpc.log", {})
    try:
        server.wait_live()
        client = triton.InferenceServerClient(server.address)
        for row, named in BAD_VALUES:
            tensor = triton.InferInput("rows", [1, 3], "BYTES")
            tensor.set_data_from_numpy(np.array([row], dtype=object))
            with pytest.raises(InferenceServerException) as refused:
                client.infer("churn", [tensor], client_timeout=60)
            assert refused.value.status() == "StatusCode.INVALID_ARGUMENT" and named in refused.value.message()
        tensor = triton.InferInput("rows", [1, 3], "BYTES")
        tensor.set_data_from_numpy(np.array([GOOD], dtype=object))
        assert client.infer("churn", [tensor], client_timeout=60).as_numpy("label").shape == (1,)
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_onnx_runtime_invalid_argument_on_a_value_is_a_400(tmp_path) -> None:
    from onnx import helper, numpy_helper

    table = numpy_helper.from_array(np.arange(10, dtype=np.float32).reshape(5, 2), "table")
    nodes = [helper.make_node("Constant", [], ["table"], value=table),
             helper.make_node("Gather", ["table", "ids"], ["vectors"])]  # fmt: skip
    folder = write_graph_function(tmp_path / "lookup", "lookup", nodes, [("ids", "INT64", [-1])],
                                  [("vectors", "FP32", [-1, 2])], "Looks rows of a 5-row table up by id.")  # fmt: skip
    client = make_client(folder)
    body = {"inputs": [{"name": "ids", "datatype": "INT64", "shape": [2], "data": [1, 4]}]}
    assert client.post("/v2/models/lookup/infer", json=body).status_code == 200
    body["inputs"][0]["data"] = [1, 7]
    answer = client.post("/v2/models/lookup/infer", json=body)
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert "out of data bounds" in answer.get_json()["error"] and "ONNXRuntimeError" not in answer.get_json()["error"]


def test_a_value_error_of_the_model_itself_stays_a_model_fault() -> None:
    from sklearn.preprocessing import StandardScaler

    try:
        StandardScaler().fit(np.zeros((2, 2))).transform(np.array([["twelve", "1"]], dtype=object))
    except ValueError as raised:
        assert refuses_the_input(raised)  # raised by scikit-learn's input checks
    try:
        json.loads("{")  # a ValueError raised anywhere else, as a model's own code would
    except ValueError as raised:
        assert not refuses_the_input(raised)
