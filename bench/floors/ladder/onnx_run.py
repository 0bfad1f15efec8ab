"""Ladder step: the previous step, then one ONNX Runtime call, its output returned as JSON.

The least an ONNX function can do per request: no validation, no protocol, no contract.
"""

import os

import numpy as np
import onnxruntime as ort
import orjson

options = ort.SessionOptions()
options.intra_op_num_threads = int(os.environ.get("BENCH_ORT_THREADS", "0"))
session = ort.InferenceSession(os.environ["BENCH_MODEL"], options, providers=["CPUExecutionProvider"])
INPUT = session.get_inputs()[0].name


def handle(request):
    tensor = orjson.loads(request.get_data())["inputs"][0]
    values = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    (result,) = session.run(None, {INPUT: values})[:1]
    return orjson.dumps({"outputs": [{"data": result.ravel().tolist()}]})
