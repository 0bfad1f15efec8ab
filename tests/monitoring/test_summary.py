"""Drift summaries and scores: the bins add up across instances, and the distances are SciPy's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from modelfn.monitoring.features import Features
from modelfn.monitoring.stats import jensen_shannon, score, verdict, wasserstein
from modelfn.monitoring.summary import OTHER, Counts, Reference, merge


def rows(rng: np.random.Generator, n: int, shift: float = 0.0, plans: tuple[float, ...] = (0.6, 0.3, 0.1)) -> Features:
    return Features.of(
        {"tenure": rng.normal(30 + shift, 10, n), "monthly": rng.gamma(2.0, 20.0, n)},
        {
            "plan": list(rng.choice(["basic", "pro", "team"], n, p=plans)),
            "output:label": list(rng.choice(["0", "1"], n)),
        },
    )


def test_the_distances_are_scipys() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        positions = np.sort(rng.normal(size=12))
        u, v = rng.random(12), rng.random(12)
        assert wasserstein(positions, u, v) == pytest.approx(wasserstein_distance(positions, positions, u, v), rel=1e-9)
        assert jensen_shannon(u, v) == pytest.approx(jensenshannon(u, v), rel=1e-9)


def test_summaries_of_instances_add_up_to_one_of_all_rows() -> None:
    rng = np.random.default_rng(2)
    reference = Reference.compute("churn", "1", rows(rng, 2000))
    parts = [rows(rng, n, shift=5) for n in (300, 500, 700)]
    one, apart = Counts(reference), []
    for part in parts:
        one.add(part)
        alone = Counts(reference)
        alone.add(part)
        apart.append(alone.take())
    assert merge(apart) == merge([one.take()])
    assert one.take()["rows"] == 0  # take() starts again from zero


def test_values_outside_the_reference_and_new_categories_are_counted() -> None:
    rng = np.random.default_rng(3)
    reference = Reference.compute("churn", "1", rows(rng, 1000))
    counts = Counts(reference)
    wild = Features.of({"tenure": np.array([-1e6, 1e6, np.nan]), "monthly": np.array([1.0, 2.0, 3.0])},
                    {"plan": [f"new-{i}" for i in range(3)], "output:label": ["0", "1", "0"]})  # fmt: skip
    for _ in range(30):
        counts.add(wild)
    summary = counts.take()
    tenure = summary["numeric"]["tenure"]
    assert tenure["counts"][0] == 30 and tenure["counts"][-1] == 30 and tenure["missing"] == 30
    assert tenure["below_sum"] == -3e7 and tenure["above_sum"] == 3e7
    assert summary["categorical"]["plan"] == {"new-0": 30, "new-1": 30, "new-2": 30}
    many = Counts(reference)
    many.add(Features.of({}, {"plan": [f"p{i}" for i in range(200)]}))
    assert many.take()["categorical"]["plan"][OTHER] == 200 - 64  # bounded: a caller cannot grow it without end


def test_a_shift_drifts_and_the_same_distribution_does_not() -> None:
    rng = np.random.default_rng(4)
    reference = Reference.compute("churn", "1", rows(rng, 2000))
    for _ in range(20):
        same = Counts(reference)
        same.add(rows(rng, 1000))
        assert not verdict(score(reference, same.take())).drift
    shifted = Counts(reference)
    shifted.add(rows(rng, 1000, shift=8, plans=(0.1, 0.3, 0.6)))
    scores = {s.name: s for s in score(reference, shifted.take())}
    assert scores["tenure"].drifted and scores["plan"].drifted and not scores["monthly"].drifted
    judged = verdict(list(scores.values()))
    assert judged.share == pytest.approx(2 / 3) and judged.dataset and judged.drift


def test_a_reference_is_json_and_its_format_is_checked() -> None:
    import json

    reference = Reference.compute("churn", "1", rows(np.random.default_rng(5), 500))
    again = Reference(json.loads(json.dumps(reference.data)))
    assert again.numeric_names == reference.numeric_names and np.array_equal(again.edges, reference.edges)
    with pytest.raises(ValueError, match="reference format"):
        Reference({**reference.data, "format": 99})
