"""The HTML drift report: the verdict, a table of every feature, and a chart per drifted feature.

One self-contained file (inline SVG, no script, no external asset), so it can be mailed, stored
beside the summaries or served from a bucket.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from modelfn.monitoring.summary import Reference
    from modelfn.tooling.monitor import Report

#: Charts drawn at most (the most drifted features first).
MAX_CHARTS = 24
_STYLE = """body{font:14px system-ui,sans-serif;margin:2em;color:#111}table{border-collapse:collapse}
td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}td.n{text-align:right}
.yes{color:#b91c1c;font-weight:600}.charts{display:flex;flex-wrap:wrap;gap:1.5em}figure{margin:0}
figcaption{font-size:13px}.ref{fill:#9ca3af}.now{fill:#2563eb}"""


def html_report(result: Report, reference: Reference) -> str:
    """The report as one HTML page."""
    from modelfn.tooling.monitor import _when

    judged = result.verdict
    verdict = "Drift" if judged.drift else "No drift"
    rows = "".join(
        f"<tr><td>{html.escape(s.name)}</td><td>{s.method}</td><td class=n>{s.score:.3f}</td>"
        f"<td class=n>{s.threshold:.2f}</td><td class={'yes' if s.drifted else 'no'}>{'yes' if s.drifted else 'no'}"
        "</td></tr>"
        for s in sorted(result.scores, key=lambda s: -s.score / s.threshold)
    )
    charts = "".join(_chart(s.name, reference, result) for s in
                     sorted(result.drifted, key=lambda s: -s.score / s.threshold)[:MAX_CHARTS])  # fmt: skip
    title = f"{html.escape(result.model)} v{html.escape(result.version)}: {verdict.lower()}"
    return (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{title}</title><style>{_STYLE}</style>"
        f"<h1>{verdict}: {html.escape(result.model)} v{html.escape(result.version)}</h1>"
        f"<p>{result.rows:,} rows from {result.instances} instance(s) in {result.files} summaries, "
        f"{_when(result.start)} to {_when(result.end)}. Share of input features drifted: {judged.share:.2f} "
        f"(dataset drift at 0.50: {'yes' if judged.dataset else 'no'}); predicted classes drifted: "
        f"{html.escape(', '.join(judged.outputs) or 'none')}.</p>"
        + (
            f"<h2>Drifted features: reference (grey) and now (blue)</h2><div class=charts>{charts}</div>"
            if charts
            else ""
        )
        + f"<h2>Every feature</h2><table><tr><th>feature</th><th>method</th><th>score</th><th>threshold</th>"
        f"<th>drift</th></tr>{rows}</table></html>\n"
    )


def _chart(name: str, reference: Reference, result: Report) -> str:
    """Two bar series (shares of the reference and of now) over the feature's bins or categories."""
    if name in reference.data["numeric"]:
        edges = reference.data["numeric"][name]["edges"]
        labels = ["below", *(f"{edges[i]:.3g}" for i in range(len(edges) - 1)), "above"]
        ref = np.asarray(reference.data["numeric"][name]["counts"], dtype=float)
        now = np.asarray(result.summary["numeric"][name]["counts"], dtype=float)
    else:
        known, seen = reference.data["categorical"][name], result.summary["categorical"].get(name, {})
        labels = sorted(set(known) | set(seen))[:40]
        ref = np.array([known.get(c, 0) for c in labels], dtype=float)
        now = np.array([seen.get(c, 0) for c in labels], dtype=float)
    ref, now = ref / max(ref.sum(), 1), now / max(now.sum(), 1)
    width, height, top = 360, 140, max(ref.max(initial=0), now.max(initial=0), 1e-9)
    step = width / len(labels)
    bars = []
    for i in range(len(labels)):
        for offset, share, kind in ((0.1, ref[i], "ref"), (0.5, now[i], "now")):
            h = height * share / top
            bars.append(f'<rect class={kind} x="{i * step + offset * step:.1f}" y="{height - h:.1f}" '
                        f'width="{step * 0.4:.1f}" height="{h:.1f}"><title>{html.escape(labels[i])}: '
                        f"{share:.3f}</title></rect>")  # fmt: skip
    svg = f'<svg width="{width}" height="{height + 14}" role="img" aria-label="{html.escape(name)}">{"".join(bars)}'
    svg += f'<text x="0" y="{height + 12}" font-size="10">{html.escape(labels[0])}</text>'
    svg += (
        f'<text x="{width}" y="{height + 12}" font-size="10" text-anchor="end">{html.escape(labels[-1])}</text></svg>'
    )
    return f"<figure>{svg}<figcaption>{html.escape(name)}</figcaption></figure>"
