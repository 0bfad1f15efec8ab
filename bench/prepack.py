"""What ``MODELFN_ORT_PREPACK=0`` trades: session time and memory against inference latency by batch size.

    python bench/prepack.py [--size 768] [--runs 3]

Loads the laid-out model of bench/model_size.py (``<size>mb-bundle``: the graph plus its ``.data``
file, copied to tmpfs as a store's fetch leaves it on Cloud Run) in a fresh process per run, with
and without pre-packing in turn, and times the session, the anonymous memory it took, and the median
of 5 inferences at 1, 8 and 64 rows. Writes bench/results/prepack.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BATCHES = (1, 8, 64)
PROBE = """
import json, statistics, sys, time
import numpy as np, onnxruntime as ort
def anon():
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("RssAnon:"))
options = ort.SessionOptions()
options.add_session_config_entry("session.disable_prepacking", sys.argv[2])
before = anon()
started = time.perf_counter()
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
figures = {"session_s": time.perf_counter() - started, "anon_bytes": anon() - before}
spec = session.get_inputs()[0]
for rows in (1, 8, 64):
    x = np.random.default_rng(0).standard_normal((rows, spec.shape[1]), dtype=np.float32)
    session.run(None, {spec.name: x})
    times = []
    for _ in range(5):
        started = time.perf_counter()
        session.run(None, {spec.name: x})
        times.append(time.perf_counter() - started)
    figures[f"rows_{rows}_ms"] = statistics.median(times) * 1000
print(json.dumps(figures))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description="Pre-packing on and off.")
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from model_size import build_bundles, build_model

    bundle, _ = build_bundles(build_model(args.size))
    shm = Path(tempfile.mkdtemp(prefix="modelfn-prepack-", dir="/dev/shm"))
    try:
        for path in bundle.glob("model.onnx*"):
            shutil.copy2(path, shm / path.name)
        samples: dict[str, list[dict]] = {"on": [], "off": []}
        for run in range(args.runs):
            for mode in ("on", "off") if run % 2 == 0 else ("off", "on"):
                flag = "0" if mode == "on" else "1"
                done = subprocess.run([sys.executable, "-c", PROBE, str(shm / "model.onnx"), flag],
                                      capture_output=True, text=True, check=True, env=os.environ)  # fmt: skip
                samples[mode].append(json.loads(done.stdout))
    finally:
        shutil.rmtree(shm, ignore_errors=True)
    median = {mode: {key: statistics.median(s[key] for s in runs) for key in runs[0]} for mode, runs in samples.items()}
    lines = [
        f"Pre-packing on and off, the {args.size} MiB laid-out MatMul chain in tmpfs (median of {args.runs} "
        f"processes, {os.cpu_count()} CPUs).",
        "",
        "| pre-packing | session | anonymous memory | " + " | ".join(f"{rows} rows" for rows in BATCHES) + " |",
        "|---|---:|---:|" + "---:|" * len(BATCHES),
    ]
    for mode in ("on", "off"):
        m = median[mode]
        cells = " | ".join(f"{m[f'rows_{rows}_ms']:.0f} ms" for rows in BATCHES)
        lines.append(f"| {mode} | {m['session_s']:.2f} s | {m['anon_bytes'] / 2**20:,.0f} MiB | {cells} |")
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prepack.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
