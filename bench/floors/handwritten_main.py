"""Floor 2: the hand-written functions-framework function, session created at import."""

import json
import os

import numpy as np
import onnxruntime as ort

session = ort.InferenceSession(os.environ["BENCH_MODEL"], providers=["CPUExecutionProvider"])


def handle(request):
    pixels = np.asarray(request.get_json()["pixels"], dtype=np.float32)
    probabilities, labels = session.run(None, {"pixels": pixels})
    return json.dumps({"label": labels.tolist(), "probabilities": probabilities.tolist()})
