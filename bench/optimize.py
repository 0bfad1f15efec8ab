"""What ``modelfn convert --optimize`` buys: session creation and latency, side by side.

    python bench/optimize.py [--runs 9]

MobileNetV2 (14 MB, random weights; bench/medium_model.py) as built, and as
``modelfn convert --optimize`` writes it (ONNX Runtime's graph after the basic and
extended passes, saved once). Each is loaded by ONNX Runtime at the runtime's
default level (``all``: the passes run again, plus the CPU-specific layout pass)
and with graph optimization off (``MODELFN_ORT_GRAPH_OPTIMIZATION=disable``).
Session creation is timed in a fresh process per run, interleaved and rotated;
latency is the median of 100 single-image inferences in that process.
Writes bench/results/optimize.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import coldstart  # noqa: E402
import medium_model  # noqa: E402

CACHE = HERE / ".cache"
PROBE = """
import json, sys, time
import numpy as np
import onnxruntime as ort
data = open(sys.argv[1], "rb").read()
options = ort.SessionOptions()
options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, sys.argv[2])
started = time.perf_counter()
session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
created = time.perf_counter() - started
image = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
for _ in range(10):
    session.run(None, {"image": image})
samples = []
for _ in range(100):
    begin = time.perf_counter()
    session.run(None, {"image": image})
    samples.append(time.perf_counter() - begin)
print(json.dumps({"session": created, "latency": sorted(samples)[50]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description="Offline graph optimization side by side.")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    source = medium_model.build(CACHE / "mobilenet")
    optimized = CACHE / "mobilenet-opt"
    if not optimized.exists():
        subprocess.run([sys.executable, "-m", "modelfn", "convert", str(source), "--out", str(optimized), "--optimize"],
                       check=True, capture_output=True)  # fmt: skip
    report = json.loads((optimized / "conversion-report.json").read_text())
    cases = {
        "as built, runtime level all (default)": (source, "ORT_ENABLE_ALL"),
        "--optimize, runtime level all (default)": (optimized, "ORT_ENABLE_ALL"),
        "--optimize, runtime optimization off": (optimized, "ORT_DISABLE_ALL"),
        "as built, runtime optimization off": (source, "ORT_DISABLE_ALL"),
    }
    results: dict[str, list[dict[str, float]]] = {label: [] for label in cases}
    labels = list(cases)
    for run in range(args.runs):
        for label in coldstart.rotated(labels, run):
            folder, level = cases[label]
            out = subprocess.run([sys.executable, "-c", PROBE, str(folder / "model.onnx"), level],
                                 check=True, capture_output=True, text=True).stdout  # fmt: skip
            results[label].append(json.loads(out))
    lines = [
        f"Offline graph optimization, MobileNetV2 14 MB "
        f"({args.runs} interleaved runs, {os.cpu_count()} CPUs; medians).",
        "",
        "| artifact, runtime setting | session creation | latency (1 image) |",
        "|---|---:|---:|",
    ]
    for label, samples in results.items():
        session = statistics.median(s["session"] for s in samples) * 1000
        latency = statistics.median(s["latency"] for s in samples) * 1000
        lines.append(f"| {label} | {session:.1f} ms | {latency:.2f} ms |")
    diff = report["outputs"]["probabilities"]["max_abs_diff"]
    lines += ["", f"Verified by modelfn convert on 8 images: max abs difference {diff:.2g}; "
              f"{report['source']['bytes']:,} -> {report['converted']['bytes']:,} bytes."]  # fmt: skip
    coldstart.RESULTS.mkdir(parents=True, exist_ok=True)
    (coldstart.RESULTS / "optimize.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
