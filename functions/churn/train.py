"""Train the churn pipeline on a DataFrame with named, mixed-type columns, as people train one.

    python functions/churn/train.py

The customers are generated here, seeded (nothing is downloaded): tenure in months, the plan and the
contract term as strings, the monthly charge in dollars with some values missing. Whether a customer
left is drawn from a logistic model of those columns, so the data has a signal a pipeline can learn
and a noise floor it cannot. The pipeline is what a data scientist writes for such a frame: a
``ColumnTransformer`` that imputes and scales the numbers and one-hot encodes the strings, then a
logistic regression. It is fitted on the DataFrame itself, never retrained for modelfn, and saved
with skops.

Writes ``model.skops``, ``validation.csv`` (the held-out rows with their ``label``, 1 = left, for
``modelfn convert --validation``) and prints the sha256 and the held-out accuracy that
``modelfn.yaml`` records.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20261205
CUSTOMERS = 4000
PLANS = ["basic", "family", "pro"]
TERMS = ["month-to-month", "one-year", "two-year"]
COLUMNS = ["tenure", "plan", "contract", "monthly"]


def customers(count: int = CUSTOMERS, seed: int = SEED):
    """The generated customers as a DataFrame, and whether each churned (1) or stayed (0)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    plan = rng.choice(PLANS, count, p=[0.5, 0.2, 0.3])
    term = rng.choice(TERMS, count, p=[0.55, 0.25, 0.2])
    tenure = rng.integers(1, 73, count)
    base = {"basic": 25.0, "family": 60.0, "pro": 45.0}
    monthly = np.array([base[p] for p in plan]) + rng.normal(0, 6, count)
    logit = (
        3.5
        - 0.09 * tenure
        + 0.08 * (monthly - 40)
        + np.select([term == "one-year", term == "two-year"], [-2.0, -3.5], 0.0)
        + np.where(plan == "family", -1.5, 0.0)
    )
    churned = (rng.random(count) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    monthly = np.round(monthly, 2)
    monthly[rng.random(count) < 0.03] = np.nan  # a few charges were never recorded
    frame = pd.DataFrame({"tenure": tenure.astype(np.int64), "plan": plan, "contract": term, "monthly": monthly})
    return frame, churned


def pipeline():
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    columns = ColumnTransformer([
        ("numbers", numbers, ["tenure", "monthly"]),
        ("categories", OneHotEncoder(handle_unknown="error"), ["plan", "contract"]),
    ])  # fmt: skip
    return Pipeline([("columns", columns), ("classifier", LogisticRegression(max_iter=1000, random_state=SEED))])


def split():
    from sklearn.model_selection import train_test_split

    frame, churned = customers()
    return train_test_split(frame, churned, test_size=0.25, random_state=SEED, stratify=churned)


def main() -> None:
    import skops.io

    x_train, x_test, y_train, y_test = split()
    model = pipeline().fit(x_train, y_train)
    data = skops.io.dumps(model)
    (HERE / "model.skops").write_bytes(data)
    held_out = x_test.assign(label=y_test)
    held_out.to_csv(HERE / "validation.csv", index=False)
    print(f"sha256: {hashlib.sha256(data).hexdigest()}")
    print(f"held-out accuracy: {model.score(x_test, y_test):.4f} on {len(y_test)} customers")
    print(f"always 'stayed': {1 - y_test.mean():.4f}")
    print(f"untrusted types: {skops.io.get_untrusted_types(data=data)}")


if __name__ == "__main__":
    main()
