"""Train the helpdesk intent classifier and export it to ONNX, reproducibly.

    python functions/helpdesk/train.py

The data set is ``intents.yaml``: questions about modelfn written for this repository, by intent.
A seeded, stratified 75/25 split keeps a quarter of the phrasings of every intent out of training;
the held-out accuracy is printed and recorded in ``modelfn.yaml``. The shipped model is the one
trained on the training part, so the recorded figure describes it exactly.

Tokenization is the pre hook's (``text_features.py``), so the model itself takes plain tensors:
a logistic regression over 2,048 hashed features, exported with skl2onnx (label and probabilities,
no ZipMap). Logistic regression with L-BFGS is deterministic: two runs write the same bytes.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20261124
sys.path.insert(0, str(HERE))

from answers import ANSWERS, MIN_CONFIDENCE  # noqa: E402
from text_features import DIMENSIONS, features  # noqa: E402


def dataset() -> tuple[list[str], np.ndarray, list[str]]:
    """``(texts, labels, intent names)``; the intents must match ``answers.ANSWERS`` in order."""
    import yaml

    intents = yaml.safe_load((HERE / "intents.yaml").read_text())
    names = list(intents)
    if names != list(ANSWERS):
        raise SystemExit(f"intents.yaml and answers.py disagree: {names} != {list(ANSWERS)}")
    texts = [text for name in names for text in intents[name]]
    labels = np.array([index for index, name in enumerate(names) for _ in intents[name]], dtype=np.int64)
    return texts, labels, names


def split():
    from sklearn.model_selection import train_test_split

    texts, labels, names = dataset()
    x_train, x_test, y_train, y_test = train_test_split(
        texts, labels, test_size=0.25, random_state=SEED, stratify=labels
    )
    return x_train, x_test, y_train, y_test, names


def train(x_train: list[str], y_train: np.ndarray):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=30.0, max_iter=5000, random_state=SEED)
    model.fit(features(x_train), y_train)
    return model


def export(model) -> bytes:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onnx_model = to_onnx(
        model,
        initial_types=[("features", FloatTensorType([None, DIMENSIONS]))],
        options={id(model): {"zipmap": False}},
        target_opset=17,
        final_types=None,
    )
    names = [output.name for output in onnx_model.graph.output]
    if names != ["label", "probabilities"]:
        raise SystemExit(f"unexpected ONNX outputs {names}")
    onnx_model.producer_version = ""  # keep the bytes independent of the skl2onnx patch release
    return onnx_model.SerializeToString()


def write_heldout_requests(x_test: list[str], path: Path = HERE / "heldout.jsonl") -> None:
    """The held-out phrasings as request bodies, one per line (the contract's ``validation_requests``)."""
    import json

    path.write_text("".join(json.dumps({"text": text}, ensure_ascii=False) + "\n" for text in x_test))


def main() -> None:
    x_train, x_test, y_train, y_test, names = split()
    model = train(x_train, y_train)
    data = export(model)
    (HERE / "model.onnx").write_bytes(data)
    write_heldout_requests(x_test)
    right = model.predict(features(x_test)) == y_test
    answered = model.predict_proba(features(x_test)).max(axis=1) >= MIN_CONFIDENCE
    print(f"sha256: {hashlib.sha256(data).hexdigest()}")
    print(f"intents: {len(names)}, phrasings: {len(y_train)} for training, {len(y_test)} held out")
    print(f"held-out accuracy: {right.mean():.4f}")
    print(f"answered (confidence >= {MIN_CONFIDENCE}): {answered.mean():.4f}, right: {right[answered].mean():.4f}")


if __name__ == "__main__":
    main()
