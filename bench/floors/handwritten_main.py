"""Floor 2: the hand-written functions-framework function, session created at import."""

import json
import os

import numpy as np
import onnxruntime as ort

session = ort.InferenceSession(os.environ["BENCH_MODEL"], providers=["CPUExecutionProvider"])
INPUT = os.environ.get("BENCH_INPUT", "pixels")
OUTPUTS = [output.name for output in session.get_outputs()]


def handle(request):
    values = np.asarray(request.get_json()[INPUT], dtype=np.float32)
    results = session.run(OUTPUTS, {INPUT: values})
    return json.dumps({name: result.tolist() for name, result in zip(OUTPUTS, results, strict=True)})
