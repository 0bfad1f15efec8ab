"""Tabular models trained here as people train them: scikit-learn pipelines over string and number columns."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import yaml
from helpers import sha256_of

MAIN = "from modelfn.adapters.gcf import http_function\n\nhandle = http_function(__file__)\n"
#: A row the churn model takes: tenure, plan, monthly charge, as strings.
GOOD = ["12", "pro", "29.5"]


def churn_function(folder: Path) -> Path:
    """A ColumnTransformer pipeline trained here on rows of strings, pickled with its digest pinned."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    plans = rng.choice(["basic", "pro"], 80)
    rows = np.array([[str(rng.integers(1, 60)), plan, f"{rng.uniform(10, 80):.1f}"] for plan in plans], dtype=object)
    model = make_pipeline(
        ColumnTransformer([("numbers", StandardScaler(), [0, 2]), ("plan", OneHotEncoder(), [1])]),
        LogisticRegression(),
    ).fit(rows, (plans == "pro").astype(int))
    folder.mkdir(parents=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(model))
    contract = {
        "name": "churn",
        "version": "1",
        "framework": "sklearn",
        "artifact": {"uri": "model.pkl", "sha256": sha256_of(folder / "model.pkl")},
        "inputs": [{"name": "rows", "datatype": "BYTES", "shape": [-1, 3]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
        "example": {"rows": [GOOD]},
        "warmup": "off",  # zeros are empty strings, which the scaler cannot take
        "docs": {"description": "Churn from tenure, plan and monthly charge, as strings."},
    }
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    (folder / "main.py").write_text(MAIN)
    return folder
