"""Small mergeable summaries of features: counts on the reference's bins, and counts of categories.

The **reference** (``modelfn monitor reference``) fixes, for each numeric feature, :data:`BINS`
equal-width bins between the smallest and largest value of the validation set, and keeps its counts
there; for each categorical feature, its categories' counts. A **summary** counts an instance's rows
on the same bins, plus a bin below and one above (with the sum of the values that fell there, so a
distance can place them), and the values that were not numbers (NaN). Summaries of any number of
instances and windows add up into one, bin by bin, without the rows themselves.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from modelfn.monitoring.features import Features

#: Equal-width bins between the reference's smallest and largest value.
BINS = 20
#: Categories a summary tracks beyond the reference's; the rest are counted as :data:`OTHER`.
MAX_NEW_CATEGORIES = 64
OTHER = "(other)"
#: The summary file format's version.
FORMAT = 1


class Reference:
    """Bins and counts of the validation set: what "no drift" looks like (JSON, never pickle)."""

    def __init__(self, data: dict[str, Any]) -> None:
        if data.get("format") != FORMAT:
            raise ValueError(f"reference format {data.get('format')!r}; this modelfn reads {FORMAT}")
        self.data = data
        self.numeric_names: tuple[str, ...] = tuple(data["numeric"])
        self.categorical_names: list[str] = list(data["categorical"])
        self.edges = np.array([data["numeric"][n]["edges"] for n in self.numeric_names], dtype=np.float64).reshape(
            len(self.numeric_names), BINS + 1
        )

    @classmethod
    def compute(cls, model: str, version: str, rows: Features) -> Reference:
        """The reference of the validation set's features."""
        numeric: dict[str, Any] = {}
        for index, name in enumerate(rows.names):
            values = rows.matrix[:, index]
            finite = values[np.isfinite(values)]
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
            if high <= low:
                low, high = low - 0.5, high + 0.5  # a constant: one value, bins around it
            edges = np.linspace(low, high, BINS + 1)
            numeric[name] = {"edges": edges.tolist(), "mean": float(finite.mean()) if finite.size else 0.0,
                             "std": float(finite.std()) if finite.size else 0.0}  # fmt: skip
        categorical: dict[str, dict[str, int]] = {name: {} for name in rows.categorical}
        reference = cls({"format": FORMAT, "model": model, "version": version, "numeric": numeric,
                         "categorical": categorical, "rows": 0})  # fmt: skip
        counts = Counts(reference)
        counts.add(rows)
        for index, name in enumerate(reference.numeric_names):
            numeric[name]["counts"] = counts.bins[index].tolist()
        for name in reference.categorical_names:
            categorical[name].update(counts.categories[name])
        reference.data["rows"] = counts.rows
        return reference


class Counts:
    """An instance's running summary on a reference's bins; :meth:`add` is safe from any thread."""

    def __init__(self, reference: Reference) -> None:
        self.reference = reference
        features = len(reference.numeric_names)
        #: Per numeric feature: below, the reference's bins, above.
        self.bins = np.zeros((features, BINS + 2), dtype=np.int64)
        self.below_sum = np.zeros(features)
        self.above_sum = np.zeros(features)
        self.missing = np.zeros(features, dtype=np.int64)
        self.categories: dict[str, dict[str, int]] = {name: {} for name in reference.categorical_names}
        self.rows = 0
        self._lock = threading.Lock()
        edges = reference.edges
        self._low, self._high = edges[:, 0], edges[:, -1]
        self._scale = BINS / (self._high - self._low)
        self._offsets = np.arange(features) * (BINS + 2)

    def add(self, rows: Features) -> None:
        """Count a call's rows (features the reference does not know are ignored)."""
        names = self.reference.numeric_names
        if names:
            if rows.names == names:  # the usual case: the model's features, in the reference's order
                values = rows.matrix
            else:
                values = np.full((len(rows.matrix), len(names)), np.nan)
                where = {name: index for index, name in enumerate(rows.names)}
                for index, name in enumerate(names):
                    if name in where:
                        values[:, index] = rows.matrix[:, where[name]]
            low, high, scale = self._low, self._high, self._scale
            missing = np.isnan(values)
            has_missing = bool(missing.any())
            if has_missing:
                values = np.where(missing, low, values)  # counted apart, below
            # 0: below the first edge; i: in bin i (the last edge belongs to the last bin); BINS + 1: above.
            # Equal widths make it arithmetic: a few array operations a call, whatever the batch.
            above = values > high
            slot = np.maximum(np.minimum(np.floor((values - low) * scale), BINS - 1) + 1, 0) + above
            flat = (self._offsets + slot.astype(np.int64)).ravel()
            if has_missing:
                flat = flat[~missing.ravel()]
            # One row (a request's usual batch) has one slot per feature, each in its own row of bins: no
            # index repeats, so the counts take +1 in place; several rows are counted with bincount.
            added = flat if len(values) == 1 else np.bincount(flat, minlength=self.bins.size)
            below = values < low
            below_sum = np.where(below, values, 0.0).sum(axis=0) if below.any() else None
            above_sum = np.where(above, values, 0.0).sum(axis=0) if above.any() else None
        with self._lock:
            if names:
                if len(values) == 1:
                    self.bins.reshape(-1)[added] += 1
                else:
                    self.bins += added.reshape(self.bins.shape)
                if below_sum is not None:
                    self.below_sum += below_sum
                if above_sum is not None:
                    self.above_sum += above_sum
                if has_missing:
                    self.missing += missing.sum(axis=0)
            for name, values_of in rows.categorical.items():
                counts = self.categories.get(name)
                if counts is None:
                    continue
                for value in values_of:
                    key = value if value in counts or len(counts) < MAX_NEW_CATEGORIES else OTHER
                    counts[key] = counts.get(key, 0) + 1
            self.rows += rows.rows

    def take(self) -> dict[str, Any]:
        """The counts so far as a summary (JSON), and start again from zero."""
        with self._lock:
            summary = {
                "format": FORMAT,
                "rows": self.rows,
                "numeric": {name: {"counts": self.bins[i].tolist(), "below_sum": float(self.below_sum[i]),
                                   "above_sum": float(self.above_sum[i]), "missing": int(self.missing[i])}
                            for i, name in enumerate(self.reference.numeric_names)},
                "categorical": {name: dict(counts) for name, counts in self.categories.items()},
            }  # fmt: skip
            self.bins[:] = 0
            self.below_sum[:] = 0
            self.above_sum[:] = 0
            self.missing[:] = 0
            self.categories = {name: {} for name in self.reference.categorical_names}
            self.rows = 0
        return summary


def merge(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary of many (instances, windows): counts and sums added, feature by feature."""
    merged: dict[str, Any] = {"format": FORMAT, "rows": 0, "numeric": {}, "categorical": {}}
    for summary in summaries:
        if summary.get("format") != FORMAT:
            raise ValueError(f"summary format {summary.get('format')!r}; this modelfn reads {FORMAT}")
        merged["rows"] += summary["rows"]
        for name, part in summary["numeric"].items():
            into = merged["numeric"].setdefault(name, {"counts": [0] * len(part["counts"]), "below_sum": 0.0,
                                                       "above_sum": 0.0, "missing": 0})  # fmt: skip
            into["counts"] = [a + b for a, b in zip(into["counts"], part["counts"], strict=True)]
            for key in ("below_sum", "above_sum", "missing"):
                into[key] += part[key]
        for name, counts in summary["categorical"].items():
            into = merged["categorical"].setdefault(name, {})
            for value, count in counts.items():
                into[value] = into.get(value, 0) + count
    return merged
