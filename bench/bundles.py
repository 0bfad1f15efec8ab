"""Deployable sizes: every example function built for Lambda and Cloud Functions, beside the floor.

    python bench/bundles.py

The floor is what ONNX Runtime and numpy alone unpack to (their wheels for the same Python and
Linux), the least any ONNX function on Lambda can ship. Builds target the platforms' Python 3.12.
A build over a limit is reported with the size it measured. Writes bench/results/bundles.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from modelfn.tooling import build as builder  # noqa: E402

FUNCTIONS = ["digits", "digits-ensemble", "cancer", "digits-keras"]
MB = builder.MB


def floor(out: Path) -> int:
    """onnxruntime + numpy wheels for Lambda's Python, unpacked, with nothing stripped."""
    wheels = out / ".wheels" / "floor"
    constraints = ROOT / "packaging" / "constraints.txt"
    pins = builder.resolve(["onnxruntime", "numpy"], wheels, "3.12", builder.GLIBC["lambda"], constraints)
    files = builder.wheel_files(wheels, [p for p in pins if p.split("==")[0] in ("onnxruntime", "numpy")])
    return builder.unzipped_size(files)


def main() -> None:
    out = Path(tempfile.mkdtemp(prefix="modelfn-bundles-"))
    rows = []
    for name in FUNCTIONS:
        for target in ("lambda", "gcf"):
            try:
                report = builder.build(ROOT / "functions" / name, target, out)
                verdict = "fits" if not report.over(refused=False) else "fits; zip over 50 MB: deploy through S3"
            except builder.BuildError as error:
                report = None
                verdict = error.message.split(": ", 1)[1].split(";")[0]
            if report is None:
                rows.append(f"| {name} | {target} | | | {verdict} |")
                continue
            frameworks = ", ".join(p.split("==")[0] for p in report.requirements if p.split("==")[0] in (
                "onnxruntime", "scikit-learn", "tensorflow-cpu"))  # fmt: skip
            rows.append(
                f"| {name} ({frameworks}) | {target} | {report.sizes['zipped'] / MB:,.1f} MB | "
                f"{report.sizes['unzipped'] / MB:,.1f} MB | {verdict} |"
            )
        print(f"{name} done", file=sys.stderr)
    base = floor(out)
    lines = [
        "Deployable sizes from `modelfn build` (Python 3.12, x86_64 Linux wheels).",
        "Lambda: the zip with its dependencies; limits 50 MB zipped, 250 MB unzipped.",
        "Cloud Functions: the source zip; unzipped counts the installed requirements too; limits 100 MB / 500 MB.",
        "",
        "| function | target | zipped | unzipped | verdict |",
        "|---|---|---:|---:|---|",
        *rows,
        "",
        f"Floor: onnxruntime + numpy alone unpack to {base / MB:,.1f} MB.",
        "",
    ]
    (ROOT / "bench" / "results" / "bundles.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
