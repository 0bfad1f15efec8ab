"""Train the chained models of the digits ensemble and export them to ONNX, reproducibly.

    python functions/digits-ensemble/train.py

The function serves four models, one folder each:

- ``pca``: the 64 pixels -> 24 principal components;
- ``logreg``: a logistic regression on those components (chained after ``pca``);
- ``mlp``: the digits network of ``functions/digits``, copied as it is;
- ``ensemble``: the pipeline that runs ``pca -> logreg`` and ``mlp`` on one input
  and averages their probabilities in its post hook (soft voting).

Same data and split as ``functions/digits`` (its ``heldout_split``; nothing is
downloaded). Both scikit-learn models are exported with skl2onnx, so the deployed
function needs ONNX Runtime only. Prints each artifact's sha256 (as pinned in the
contracts) and the held-out accuracy of the chain, the MLP and the ensemble.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DIGITS = HERE.parent / "digits"
COMPONENTS = 24
SEED = 20261122


def heldout_split():
    """The split of functions/digits/train.py (a script, loaded by path)."""
    spec = importlib.util.spec_from_file_location("digits_train", DIGITS / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.heldout_split()


def train(x_train: np.ndarray, y_train: np.ndarray):
    """PCA then logistic regression, fitted as one scikit-learn pipeline."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(PCA(COMPONENTS, svd_solver="full"), LogisticRegression(max_iter=2000, random_state=SEED))
    return model.fit(x_train, y_train)


def export(model) -> tuple[bytes, bytes]:
    """Each step of the fitted pipeline as its own ONNX model, tensors named as the contracts name them."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    pca, logreg = model.named_steps["pca"], model.named_steps["logisticregression"]
    pca_proto = convert_sklearn(
        pca, initial_types=[("pixels", FloatTensorType([None, 64]))],
        final_types=[("components", FloatTensorType([None, COMPONENTS]))], target_opset=17,
    )  # fmt: skip
    logreg_proto = convert_sklearn(
        logreg, initial_types=[("components", FloatTensorType([None, COMPONENTS]))],
        options={id(logreg): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3},
    )  # fmt: skip
    # skl2onnx names each graph with a random UUID; fixed names make the bytes reproducible.
    pca_proto.graph.name, logreg_proto.graph.name = "pca", "logreg"
    names = [output.name for output in logreg_proto.graph.output]
    if names != ["label", "probabilities"]:
        raise RuntimeError(f"skl2onnx named the outputs {names}; the logreg contract expects label, probabilities")
    return pca_proto.SerializeToString(), logreg_proto.SerializeToString()


def main() -> None:
    import onnxruntime as ort

    x_train, x_test, y_train, y_test = heldout_split()
    pca_bytes, logreg_bytes = export(train(x_train, y_train))
    (HERE / "pca" / "model.onnx").write_bytes(pca_bytes)
    (HERE / "logreg" / "model.onnx").write_bytes(logreg_bytes)
    shutil.copy(DIGITS / "model.onnx", HERE / "mlp" / "model.onnx")

    def run(data: bytes, inputs: dict) -> list:
        return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, inputs)

    (components,) = run(pca_bytes, {"pixels": x_test})
    _, chain = run(logreg_bytes, {"components": components})
    mlp, _ = run((DIGITS / "model.onnx").read_bytes(), {"pixels": x_test})
    vote = ((chain + mlp) / 2).argmax(1)
    agree = chain.argmax(1) == mlp.argmax(1)
    for name, data in (("pca", pca_bytes), ("logreg", logreg_bytes)):
        print(f"{name} sha256: {hashlib.sha256(data).hexdigest()}")
    for name, labels in (("pca -> logreg", chain.argmax(1)), ("mlp", mlp.argmax(1)), ("ensemble", vote)):
        print(f"held-out accuracy, {name}: {(labels == y_test).mean():.4f} on {len(y_test)} images")
    right = vote == y_test
    print(f"the two agree on {agree.mean():.4f}; ensemble accuracy where they agree {right[agree].mean():.4f}, "
          f"where they disagree {right[~agree].mean():.4f} ({(~agree).sum()} images)")  # fmt: skip


if __name__ == "__main__":
    main()
