"""The benchmarks' results: a Markdown table and a chart of one horizontal bar per set-up, the first at the top."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path


def horizontal_bars(
    path: Path, names: Sequence[str], values: Sequence[float], *, xlabel: str, title: str,
    colors: Sequence[str] = ("#2563eb",),
) -> None:  # fmt: skip
    """Write a PNG of ``values`` as bars labelled ``names`` (colours repeat when fewer are given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shades = [colors[i % len(colors)] for i in range(len(names))]
    figure, axis = plt.subplots(figsize=(7, 0.45 * len(names) + 0.9))
    axis.barh(list(names)[::-1], list(values)[::-1], color=shades[::-1])
    axis.set_xlabel(xlabel)
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def publish(
    stem: str, text: str, timings: Mapping[str, Sequence[float]], *, xlabel: str, title: str,
    colors: Sequence[str] = ("#2563eb",),
) -> None:  # fmt: skip
    """Write ``results/<stem>.md`` (and print it), and ``results/<stem>.png``: each set-up's median."""
    results = Path(__file__).resolve().parent / "results"
    (results / f"{stem}.md").write_text(text)
    print(text)
    medians = [statistics.median(times) for times in timings.values()]
    horizontal_bars(results / f"{stem}.png", list(timings), medians, xlabel=xlabel, title=title, colors=colors)
