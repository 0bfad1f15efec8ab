"""Drift scores of a summary against its reference, with Evidently's defaults for large samples.

- **Numeric features**: the Wasserstein (earth mover's) distance between the reference's and the
  window's distributions on the reference's bins, divided by the reference's standard deviation
  ("normed", as Evidently computes it); drift when it is at least 0.1 (Evidently's default threshold).
  A constant reference feature is measured in its own units (its deviation is 0).
- **Categorical features** (and predicted classes): the Jensen-Shannon distance (natural logarithm,
  as SciPy and Evidently compute it) between the two distributions of categories; drift at 0.1.
- **The verdict**: drift when at least half of the question's features drifted (Evidently's
  ``drift_share``), or when the distribution of a predicted class did (see :func:`verdict`).

Evidently picks these two for samples over 1,000 rows; they are distances, not p-values, so a window
ten times larger does not flag a shift ten times smaller, which is what keeps false alarms rare in
windows of thousands of requests. The distances are computed here with NumPy on the bins (a function
ships no SciPy); the tests check them against ``scipy.stats.wasserstein_distance`` and
``scipy.spatial.distance.jensenshannon``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from modelfn.monitoring.summary import BINS, OTHER, Reference

#: Evidently's defaults: the normed Wasserstein distance and the Jensen-Shannon distance, both at 0.1.
NUMERIC_THRESHOLD = 0.1
CATEGORICAL_THRESHOLD = 0.1
#: Share of the question's features that must drift for the dataset to have drifted.
DRIFT_SHARE = 0.5
#: Rows a window needs before it is scored at all.
MIN_ROWS = 100


class FeatureDrift(NamedTuple):
    name: str
    method: str
    score: float
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.score >= self.threshold

    @property
    def output(self) -> bool:
        return self.name.startswith("output:")


def wasserstein(positions: np.ndarray, u: np.ndarray, v: np.ndarray) -> float:
    """The Wasserstein-1 distance between two weightings ``u`` and ``v`` of sorted ``positions``."""
    u, v = u / u.sum(), v / v.sum()
    gaps = np.diff(positions)
    return float(np.sum(np.abs(np.cumsum(u)[:-1] - np.cumsum(v)[:-1]) * gaps))


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """The Jensen-Shannon distance (natural logarithm) between two distributions of the same categories."""
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        kept = a > 0
        return float(np.sum(a[kept] * np.log(a[kept] / m[kept])))

    return float(np.sqrt(max(kl(p) + kl(q), 0.0) / 2))


def score(reference: Reference, summary: dict[str, Any]) -> list[FeatureDrift]:
    """Every feature's drift in ``summary`` (which must hold at least :data:`MIN_ROWS` rows)."""
    scores: list[FeatureDrift] = []
    for index, name in enumerate(reference.numeric_names):
        part = summary["numeric"].get(name)
        known = reference.data["numeric"][name]
        current = np.asarray(part["counts"], dtype=np.float64) if part else np.zeros(BINS + 2)
        if current.sum() == 0:
            continue
        edges = reference.edges[index]
        below = part["below_sum"] / current[0] if current[0] else edges[0]
        above = part["above_sum"] / current[-1] if current[-1] else edges[-1]
        positions = np.concatenate([[min(below, edges[0])], (edges[:-1] + edges[1:]) / 2, [max(above, edges[-1])]])
        distance = wasserstein(positions, np.asarray(known["counts"], dtype=np.float64), current)
        scale = known["std"] if known["std"] > 0 else 1.0
        scores.append(FeatureDrift(name, "wasserstein (normed)", distance / scale, NUMERIC_THRESHOLD))
    for name in reference.categorical_names:
        known_counts = reference.data["categorical"][name]
        current_counts = summary["categorical"].get(name) or {}
        if not sum(current_counts.values()):
            continue
        categories = sorted(set(known_counts) | set(current_counts) | {OTHER})
        p = np.array([known_counts.get(c, 0) for c in categories], dtype=np.float64)
        q = np.array([current_counts.get(c, 0) for c in categories], dtype=np.float64)
        scores.append(FeatureDrift(name, "jensen-shannon", jensen_shannon(p, q), CATEGORICAL_THRESHOLD))
    return scores


class Verdict(NamedTuple):
    #: The share of the question's features that drifted, and whether it reaches :data:`DRIFT_SHARE`.
    share: float
    dataset: bool
    #: The categorical outputs (predicted classes) that drifted.
    outputs: list[str]

    @property
    def drift(self) -> bool:
        """Drift: the dataset drifted, or the distribution of the model's answers did."""
        return self.dataset or bool(self.outputs)


def verdict(scores: list[FeatureDrift]) -> Verdict:
    """Whether ``scores`` say drift: over half the question's features, or a predicted class's distribution.

    One feature's flag is not a verdict: with dozens of features (a pixel each), a few that are nearly
    constant in the reference cross 0.1 in windows of the reference's own distribution (measured on
    functions/digits: see the monitoring guide), so the dataset's share decides, as in Evidently.
    """
    inputs = [s for s in scores if not s.output]
    share = sum(s.drifted for s in inputs) / len(inputs) if inputs else 0.0
    classes = [s.name for s in scores if s.output and s.method == "jensen-shannon" and s.drifted]
    return Verdict(share, share >= DRIFT_SHARE, classes)
