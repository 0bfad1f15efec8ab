"""The categories a fitted scikit-learn pipeline knows, read by column name from the pipelines people write."""

from __future__ import annotations

import numpy as np
import pytest

from modelfn.runtime.predictors.categories import known_categories

pd = pytest.importorskip("pandas")  # in the sklearn extra; always installed by make test


def frame():
    return pd.DataFrame({"tenure": [1, 5, 9, 12], "plan": ["basic", "pro", "pro", "family"],
                         "term": ["monthly", "yearly", "monthly", None], "score": [0.1, 0.2, 0.3, 0.4]})  # fmt: skip


def fit(transformers):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(ColumnTransformer(transformers), LogisticRegression()).fit(frame(), [0, 1, 0, 1])


def test_encoders_selected_by_name_or_position_and_behind_an_imputer() -> None:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    model = fit([
        ("numbers", StandardScaler(), ["tenure", "score"]),
        ("plan", OneHotEncoder(), [1]),
        ("term", make_pipeline(SimpleImputer(strategy="most_frequent"), OrdinalEncoder()), ["term"]),
    ])  # fmt: skip
    known = known_categories(model, ["tenure", "plan", "term", "score"])
    assert known == {"plan": frozenset({"basic", "family", "pro"}), "term": frozenset({"monthly", "yearly"})}


def test_an_encoder_that_ignores_unknown_categories_adds_nothing() -> None:
    from sklearn.preprocessing import OneHotEncoder

    model = fit([("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])])
    assert known_categories(model, ["tenure", "plan", "term", "score"]) == {}


def test_a_selector_is_read_as_the_fit_resolved_it_and_a_mask_adds_nothing() -> None:
    from sklearn.compose import make_column_selector
    from sklearn.preprocessing import OneHotEncoder

    columns = ["tenure", "plan", "term", "score"]
    model = fit([("strings", OneHotEncoder(), make_column_selector(pattern="plan"))])
    assert known_categories(model, columns) == {"plan": frozenset({"basic", "family", "pro"})}
    masked = fit([("strings", OneHotEncoder(), [False, True, False, False])])
    assert known_categories(masked, columns) == {}
    assert known_categories(np.zeros(3), ["a"]) == {}  # not an estimator at all
