"""Floor 1: import onnxruntime, create the session, predict once, exit. No HTTP."""

import sys

import numpy as np
import onnxruntime as ort

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
session.run(None, {"pixels": np.zeros((1, 64), dtype=np.float32)})
