"""Calls made with the kserve SDK's own REST client; run by the kserve environment's Python (make tools).

Usage: ``python kserve_calls.py BASE_URL PIXELS_JSON CHURN_ROWS_JSON``. Prints one JSON object: each call's name and
what the client returned (decoded to plain values), or the error it raised. The assertions live in
``test_peer_clients.py``; this script only speaks the protocol as the SDK does.

Cases from kserve ``python/kserve/test/test_inference_client.py`` (``test_infer``,
``test_infer_with_all_binary_data``, ``test_infer_with_binary_data``, ``test_is_server_live``,
``test_is_server_ready``, ``test_is_model_ready``) and ``python/kserve/test/test_infer_type.py``
(``test_to_rest_with_mixed_binary_data``), against models shaped as their ``DummyModel`` is used.
The churn cases send a pandas DataFrame's columns, one ``InferInput`` per column.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np
import pandas as pd
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput
from kserve.utils.numpy_codec import from_np_dtype

REQUEST_ID = "2ja0ls9j1309"  # the id kserve's tests send
PARAMS = {"test-param": "abc"}
OUTPUT_PARAMS = {"test-str": "dummy", "test-bool": True, "test-int": 100}


def plain(response: Any) -> Any:
    """An InferResponse as plain values: id and each output's name, datatype, shape and array."""
    if isinstance(response, dict):
        return response
    outputs = {o.name: {"datatype": o.datatype, "shape": list(o.shape), "data": o.as_numpy().tolist()}
               for o in response.outputs}  # fmt: skip
    return {"id": response.id, "model_name": response.model_name, "outputs": outputs}


def int_input() -> InferInput:
    return InferInput(name="input-0", datatype="INT32", shape=[2, 2], data=[[1, 2], [3, 4]], parameters=dict(PARAMS))


def fp16_input() -> InferInput:
    """kserve's FP16 input, sent as binary data."""
    tensor = InferInput(name="fp16_data", datatype="FP16", shape=[2, 2], parameters=dict(PARAMS))
    tensor.set_data_from_numpy(np.array([[1.1, 2.22], [3.345, 4.34343]], dtype=np.float16), binary_data=True)
    return tensor


def mixed_request() -> InferRequest:
    """``test_to_rest_with_mixed_binary_data``: JSON INT32, binary BYTES and FP16, outputs with parameters."""
    first = InferInput(name="input1", shape=[3], datatype="INT32", data=np.array([1, 2, 3], dtype=np.int32),
                       parameters={"test-str": "dummy"})  # fmt: skip
    second = InferInput(name="input2", shape=[1], datatype="BYTES", data=None, parameters={"test-int": 2})
    second.set_data_from_numpy(np.array(["test"], dtype=np.object_), binary_data=True)
    third = InferInput(name="input3", shape=[3], datatype="FP16", data=None)
    third.set_data_from_numpy(np.array([1.2, 2.2, 3.2], dtype=np.float16), binary_data=True)
    asked = [RequestedOutput(name=name, parameters=dict(OUTPUT_PARAMS)) for name in ("output-0", "output-1")]
    return InferRequest(request_id="4be4e82f-5500-420a-a5c5-ac86841e271b", model_name="kserve-mixed",
                        infer_inputs=[first, second, third], request_outputs=asked)  # fmt: skip


def column_inputs(frame: pd.DataFrame, *, binary_strings: bool = False) -> list[InferInput]:
    """One input per column, shape ``[rows]``, its datatype from the column's dtype (strings BYTES)."""
    inputs = []
    for name in frame.columns:
        column = frame[name].to_numpy()
        if column.dtype.kind in "OUT":
            column = column.astype(np.object_)
            tensor = InferInput(name=name, datatype="BYTES", shape=[len(frame)])
            tensor.set_data_from_numpy(column, binary_data=binary_strings)
        else:
            tensor = InferInput(name=name, datatype=from_np_dtype(column.dtype), shape=[len(frame)])
            tensor.set_data_from_numpy(column, binary_data=False)
        inputs.append(tensor)
    return inputs


def request(model: str, inputs: list[InferInput], **extra: Any) -> InferRequest:
    return InferRequest(model_name=model, request_id=REQUEST_ID, infer_inputs=inputs, **extra)


async def calls(url: str, pixels: list, churn_rows: list[dict[str, Any]]) -> dict[str, Any]:
    v1 = InferenceRESTClient(RESTConfig(protocol="v1", timeout=120))
    v2 = InferenceRESTClient(RESTConfig(protocol="v2", timeout=120))
    x = np.asarray(pixels, dtype=np.float32)
    digits_binary = InferInput(name="pixels", datatype="FP32", shape=list(x.shape))
    digits_binary.set_data_from_numpy(x, binary_data=True)
    tensor = {"name": "input-0", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4]], "parameters": PARAMS}
    binary_out = {"binary_data_output": True}
    all_binary = request("kserve-pair", [int_input(), fp16_input()], parameters={**PARAMS, **binary_out})
    output_binary = request("kserve-pair", [int_input(), fp16_input()], parameters=dict(PARAMS),
                            request_outputs=[RequestedOutput(name="output-0", parameters=binary_out)])  # fmt: skip
    customers = pd.DataFrame(churn_rows)
    unknown_plan = customers.assign(plan=["gold"] * len(customers))
    cases = {
        "v2_is_server_live": lambda: v2.is_server_live(url),
        "v2_is_server_ready": lambda: v2.is_server_ready(url),
        "v2_is_model_ready": lambda: v2.is_model_ready(url, "kserve-echo"),
        "v2_is_model_ready_unknown": lambda: v2.is_model_ready(url, "no-such-model"),
        "v1_is_model_ready": lambda: v1.is_model_ready(url, "kserve-echo"),
        "v2_infer_dict": lambda: v2.infer(
            url, {"id": REQUEST_ID, "parameters": PARAMS, "inputs": [tensor]}, model_name="kserve-echo"
        ),
        "v2_infer_request": lambda: v2.infer(
            url, request("kserve-echo", [int_input()], parameters=dict(PARAMS)), model_name="kserve-echo"
        ),
        "v2_infer_all_binary": lambda: v2.infer(url, all_binary, model_name="kserve-pair"),
        "v2_infer_binary_output": lambda: v2.infer(url, output_binary, model_name="kserve-pair"),
        "v2_infer_mixed_binary": lambda: v2.infer(url, mixed_request(), model_name="kserve-mixed"),
        "v2_infer_digits_binary": lambda: v2.infer(
            url, request("digits", [digits_binary], parameters=binary_out), model_name="digits"
        ),
        "v1_infer_instances": lambda: v1.infer(url, {"instances": [[1, 2], [3, 4]]}, model_name="kserve-echo"),
        "v1_infer_inputs": lambda: v1.infer(url, {"inputs": [[1, 2], [3, 4]]}, model_name="kserve-echo"),
        "v1_infer_digits": lambda: v1.infer(url, {"instances": x.tolist()}, model_name="digits"),
        "v2_infer_churn_columns": lambda: v2.infer(url, request("churn", column_inputs(customers)), model_name="churn"),
        "v2_infer_churn_binary_strings": lambda: v2.infer(
            url, request("churn", column_inputs(customers, binary_strings=True)), model_name="churn"
        ),
        "v2_infer_churn_unknown_plan": lambda: v2.infer(
            url, request("churn", column_inputs(unknown_plan)), model_name="churn"
        ),
        "v1_infer_churn_rows": lambda: v1.infer(url, {"instances": churn_rows}, model_name="churn"),
        "v2_infer_unknown_input": lambda: v2.infer(
            url, {"inputs": [{**tensor, "name": "input-9"}]}, model_name="kserve-echo"
        ),
    }
    results: dict[str, Any] = {}
    for name, call in cases.items():
        try:
            value = await call()
            results[name] = {"value": value if isinstance(value, bool | None) else plain(value)}
        except Exception as error:  # the test asserts on which error, per case
            status = getattr(getattr(error, "response", None), "status_code", None)
            results[name] = {"error": type(error).__name__, "message": str(error), "status": status}
    await v1.close()
    await v2.close()
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(calls(sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])))))
