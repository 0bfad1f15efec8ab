"""Train the digits classifier and export it to ONNX, reproducibly.

    python functions/digits/train.py [--out functions/digits/model.onnx]

The data is scikit-learn's bundled ``load_digits`` (1,797 8x8 images with pixel
values 0..16; nothing is downloaded). A seeded, stratified 80/20 split keeps 360
images out of training; the held-out accuracy is printed and recorded in
``modelfn.yaml``.

The model is a small Keras MLP whose first layer rescales the raw pixels, so
clients send the values exactly as ``load_digits`` gives them. It is exported
with tf2onnx from a traced function with an explicit input signature (the
route that works for Sequential models in Keras 3), then given readable tensor
names and a second output, ``label`` (ArgMax of the probabilities), so an Open
Inference Protocol client can ask for the class alone.

Reproducibility: with the pinned versions (``pip install -e .[train]``) on
x86-64, seeds, single-threaded TensorFlow and deterministic ops make two runs
produce the same bytes (checked by ``tests/functions/test_digits_training.py``,
which compares predictions, and by comparing the sha256 printed here with the
one in the contract). Float kernels are chosen per CPU instruction set, so on
a different CPU family the weights can differ in the last bits; the test
therefore asserts equal predictions, and reports whether the bytes match.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

SEED = 20261122
HERE = Path(__file__).resolve().parent
INPUT_NAME = "pixels"
PROBABILITIES = "probabilities"
LABEL = "label"


def heldout_split():
    """Return ``(x_train, x_test, y_train, y_test)``: the seeded 80/20 stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype("float32")  # (1797, 64), values 0..16
    y = digits.target.astype("int64")
    return train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)


def _configure_determinism() -> None:
    # Must happen before TensorFlow is imported.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    os.environ["TF_DETERMINISTIC_OPS"] = "1"
    os.environ["PYTHONHASHSEED"] = "0"


def train_keras(x_train, y_train):
    """Fit the Keras model with every source of randomness pinned."""
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(SEED)

    model = keras.Sequential(
        [
            keras.Input(shape=(64,), name=INPUT_NAME),
            keras.layers.Rescaling(1.0 / 16.0),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=60, batch_size=32, shuffle=True, verbose=0)
    return model


def export_onnx(model):
    """Convert the Keras model to an ONNX ``ModelProto`` with readable names."""
    import onnx
    import tensorflow as tf
    import tf2onnx
    from onnx import TensorProto, helper

    signature = (tf.TensorSpec((None, 64), tf.float32, name=INPUT_NAME),)
    function = tf.function(lambda x: model(x), input_signature=signature)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=17)

    graph = proto.graph
    old_output = graph.output[0].name
    for node in graph.node:
        node.output[:] = [PROBABILITIES if name == old_output else name for name in node.output]
    graph.output[0].name = PROBABILITIES
    graph.node.append(helper.make_node("ArgMax", [PROBABILITIES], [LABEL], axis=1, keepdims=0, name="label_argmax"))
    graph.output.append(helper.make_tensor_value_info(LABEL, TensorProto.INT64, ["batch"]))
    graph.name = "digits"
    proto.doc_string = "Handwritten digit classifier (8x8, pixel values 0..16), modelfn example."
    onnx.checker.check_model(proto)
    return proto


def write_heldout_requests(x_test, path: Path = HERE / "heldout.jsonl") -> None:
    """The held-out images as request bodies, one per line (the contract's ``validation_requests``)."""
    import json

    lines = [json.dumps({"image": image.reshape(8, 8).astype(int).tolist()}, separators=(",", ":")) for image in x_test]
    path.write_text("\n".join(lines) + "\n")


def heldout_accuracy(onnx_bytes: bytes, x_test, y_test) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (labels,) = session.run([LABEL], {INPUT_NAME: x_test})
    return float((labels == y_test).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "model.onnx")
    parser.add_argument(
        "--keras-out",
        type=Path,
        default=None,
        help="Also save the Keras original (functions/digits-keras/model.keras).",
    )
    args = parser.parse_args()

    _configure_determinism()
    x_train, x_test, y_train, y_test = heldout_split()
    model = train_keras(x_train, y_train)
    data = export_onnx(model).SerializeToString()  # before saving Keras: saving renames graph scopes
    if args.keras_out is not None:
        import numpy as np

        model.save(args.keras_out)
        np.savez(args.keras_out.parent / "validation.npz", pixels=x_test, labels=y_test)
        print(f"wrote {args.keras_out} and its validation.npz")
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes)")
    if args.out == HERE / "model.onnx":
        write_heldout_requests(x_test)
    print(f"sha256: {hashlib.sha256(data).hexdigest()}")
    print(f"held-out accuracy: {heldout_accuracy(data, x_test, y_test):.4f} on {len(y_test)} images")


if __name__ == "__main__":
    main()
