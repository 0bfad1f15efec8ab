"""Floor 1 for any model: import onnxruntime, create the session from the path, predict once on zeros, exit."""

import sys

import numpy as np
import onnxruntime as ort

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
spec = session.get_inputs()[0]
shape = [1 if not isinstance(dim, int) else dim for dim in spec.shape]
session.run(None, {spec.name: np.zeros(shape, dtype=np.float32)})
