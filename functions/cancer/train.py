"""Train the breast-cancer classifier and save it with skops, reproducibly.

    python functions/cancer/train.py

scikit-learn's bundled ``load_breast_cancer`` (569 samples, 30 features;
nothing is downloaded), a seeded stratified 75/25 split, a standardizing
logistic regression. Writes ``model.skops`` (loads without running code),
``validation.npz`` (the held-out features and labels, for ``modelfn convert``)
and prints the sha256 and held-out accuracy recorded in ``modelfn.yaml``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20261122


def split():
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    return train_test_split(x, data.target.astype(np.int64), test_size=0.25, random_state=SEED, stratify=data.target)


def main() -> None:
    import skops.io
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test, y_train, y_test = split()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000, random_state=SEED))
    model.fit(x_train, y_train)
    data = skops.io.dumps(model)
    (HERE / "model.skops").write_bytes(data)
    np.savez(HERE / "validation.npz", features=x_test, labels=y_test)
    print(f"sha256: {hashlib.sha256(data).hexdigest()}")
    print(f"held-out accuracy: {model.score(x_test, y_test):.4f} on {len(y_test)} samples")


if __name__ == "__main__":
    main()
