"""Build the medium benchmark function: MobileNetV2 with random weights, exported to ONNX.

    python bench/medium_model.py [--out bench/.cache/mobilenet]

``weights=None``: nothing is downloaded. Seeded, so the file is the same each time.
Writes a function folder (model.onnx, modelfn.yaml, main.py, and validation.npz: 8
seeded random images, so ``modelfn convert`` can verify what it does) that modelfn serves.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(out: Path) -> Path:
    if (out / "modelfn.yaml").is_file() and (out / "validation.npz").is_file():
        return out
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf
    import tf2onnx

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), classes=1000)
    signature = (tf.TensorSpec((None, 224, 224, 3), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_function(
        tf.function(lambda x: model(x), input_signature=signature), input_signature=signature, opset=17
    )
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = ["probabilities" if name == old else name for name in node.output]
    proto.graph.output[0].name = "probabilities"
    data = proto.SerializeToString()
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(data)
    (out / "modelfn.yaml").write_text(
        f"""name: mobilenet
version: "1"
framework: onnx
artifact:
  uri: model.onnx
  sha256: {hashlib.sha256(data).hexdigest()}
inputs:
  - {{name: image, datatype: FP32, shape: [-1, 224, 224, 3]}}
outputs:
  - {{name: probabilities, datatype: FP32, shape: [-1, 1000]}}
validation: validation.npz
docs:
  description: MobileNetV2 with random weights, for benchmarks only.
"""
    )
    import numpy as np

    images = np.random.default_rng(0).random((8, 224, 224, 3), dtype=np.float32)
    np.savez(out / "validation.npz", image=images)
    (out / "main.py").write_text((ROOT / "functions/digits/main.py").read_text())
    return out


def build_keras(path: Path) -> Path:
    """The same architecture as a Keras file (seeded random weights), for the Flask + Keras comparison."""
    if path.is_file():
        return path
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    keras.utils.set_random_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), classes=1000).save(path)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/.cache/mobilenet")
    folder = build(parser.parse_args().out)
    print(folder, (folder / "model.onnx").stat().st_size, "bytes")
