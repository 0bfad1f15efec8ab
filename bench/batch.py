"""Batch prediction side by side: a 100k-row CSV through the batch path, and one HTTP request per row.

    python bench/batch.py [--rounds 3] [--seconds 8]     (needs wrk: apt-get install wrk)

- **Batch path**: ``modelfn batch functions/digits rows.csv`` in a fresh process (start-up and
  model load included), and the job's own time from its summary.
- **One request per row**: the same digits function under functions-framework, one-row OIP
  requests from wrk at concurrency 1 and 8; rows per second = requests per second.

The two alternate round by round. Then peak memory: ``modelfn batch`` (1,000-row chunks) over
files of 10x, 100x and 500x the chunk, each in a fresh process, its peak RSS from getrusage().
Writes bench/results/batch.md and batch.png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import batching  # noqa: E402
import coldstart  # noqa: E402

DIGITS = ROOT / "functions" / "digits"
ROWS = 100_000
CHUNK = 1000
MEMORY_ROWS = (10 * CHUNK, 100 * CHUNK, 500 * CHUNK)
CONCURRENCY = (1, 8)


def write_csv(path: Path, rows: int) -> Path:
    """``rows`` digits images (scikit-learn's, tiled), one per line, with a header."""
    import numpy as np
    from sklearn.datasets import load_digits

    images = load_digits().data.astype(np.int64)
    tiled = np.tile(images, (rows // len(images) + 1, 1))[:rows]
    with path.open("w") as out:
        out.write(",".join(f"p{i}" for i in range(64)) + "\n")
        for start in range(0, rows, 10_000):
            block = tiled[start : start + 10_000]
            out.write("\n".join(",".join(map(str, row)) for row in block.tolist()) + "\n")
    return path


#: Runs a command and prints its peak RSS in KB. A child's peak starts at its parent's size at
#: fork time (Linux keeps it across exec), so the command is started by this small interpreter,
#: not by the benchmark, which holds the data sets.
PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def run_batch(source: Path, out: Path, chunk: int = CHUNK) -> dict[str, float]:
    """A fresh ``modelfn batch`` process: wall seconds, the job's seconds, and peak RSS (MB)."""
    for old in out.glob("*"):
        old.unlink()
    command = [sys.executable, "-m", "modelfn", "batch", str(DIGITS), str(source), "--output", str(out)]
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *command, "--chunk-rows", str(chunk)],
        capture_output=True,
        text=True,
        env={**os.environ, "MODELFN_LOG_LEVEL": "WARNING"},
        check=False,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"modelfn batch failed with {result.returncode}")
    summary = json.loads((out / f"{source.name}.summary.json").read_text())
    assert summary["predicted"] == summary["rows"], summary
    return {"wall": wall, "job": summary["seconds"], "rows": summary["rows"], "rss_mb": int(result.stdout) / 1024}


def per_row_http(seconds: int, scratch: Path) -> dict[int, float]:
    """Requests (rows) per second of one-row OIP requests, at each concurrency."""
    script = scratch / "row.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {batching.BODY!r}\n'
    )
    rates = batching.measure(DIGITS, seconds, "/v2/models/digits/infer", script)
    return {c: rates[c]["rps"] for c in CONCURRENCY if c in rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    batching.require_wrk()
    batching.CONCURRENCY = CONCURRENCY
    with tempfile.TemporaryDirectory(prefix="modelfn-bench-batch-") as name:
        scratch = Path(name)
        (scratch / "out").mkdir()
        source = write_csv(scratch / "rows.csv", ROWS)
        batch_runs, http_runs = [], []
        for round_number in range(args.rounds):
            for system in coldstart.rotated(["batch", "http"], round_number):
                if system == "batch":
                    batch_runs.append(run_batch(source, scratch / "out"))
                else:
                    http_runs.append(per_row_http(args.seconds, scratch))
            print(f"round {round_number + 1}: batch {batch_runs[-1]}, http {http_runs[-1]}", flush=True)
        memory = []
        for rows in MEMORY_ROWS:
            path = write_csv(scratch / f"memory-{rows}.csv", rows)
            result = run_batch(path, scratch / "out")
            memory.append({"rows": rows, "bytes": path.stat().st_size, **result})
            path.unlink()
            print(f"memory: {memory[-1]}", flush=True)
    write(batch_runs, http_runs, memory, args)


def write(batch_runs: list[dict], http_runs: list[dict], memory: list[dict], args: argparse.Namespace) -> None:
    job_rate = statistics.median(ROWS / run["job"] for run in batch_runs)
    wall_rate = statistics.median(ROWS / run["wall"] for run in batch_runs)
    http = {c: statistics.median(run[c] for run in http_runs) for c in CONCURRENCY}
    best = max(http.values())
    lines = [
        f"Batch prediction vs one HTTP request per row: digits (ONNX), {ROWS:,}-row CSV, {CHUNK:,}-row chunks;",
        f"medians of {args.rounds} interleaved rounds (wrk: {args.seconds} s per concurrency), {os.cpu_count()} CPUs.",
        "",
        "| path | rows/s | vs best per-row HTTP |",
        "|---|---:|---:|",
        f"| `modelfn batch`, the job (read, predict, write) | {job_rate:,.0f} | {job_rate / best:.1f}x |",
        f"| `modelfn batch`, the whole command (with start-up and load) | {wall_rate:,.0f} | {wall_rate / best:.1f}x |",
    ]
    lines += [f"| one request per row, concurrency {c} | {http[c]:,.0f} | {http[c] / best:.2f}x |" for c in CONCURRENCY]
    lines += [
        "",
        f"Peak memory of `modelfn batch` ({CHUNK:,}-row chunks, a fresh process each, peak RSS from getrusage):",
        "",
        "| rows | file | x chunk | peak RSS | rows/s (job) |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {m['rows']:,} | {m['bytes'] / 1e6:,.1f} MB | {m['rows'] // CHUNK}x | {m['rss_mb']:,.0f} MB | "
        f"{m['rows'] / m['job']:,.0f} |"
        for m in memory
    ]
    text = "\n".join(lines) + "\n"
    (coldstart.RESULTS / "batch.md").write_text(text)
    print(text)
    plot(job_rate, wall_rate, http, memory)


def plot(job_rate: float, wall_rate: float, http: dict[int, float], memory: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    labels = ["batch (job)", "batch (command)", *(f"HTTP per row, c{c}" for c in http)]
    values = [job_rate, wall_rate, *http.values()]
    left.barh(labels, values, color=["#2b6cb0", "#63b3ed", *(["#a0aec0"] * len(http))])
    left.set_xlabel("rows per second (digits, 100k-row CSV)")
    left.invert_yaxis()
    sizes = [m["bytes"] / 1e6 for m in memory]
    right.plot(sizes, [m["rss_mb"] for m in memory], marker="o", color="#2b6cb0")
    right.set_xscale("log")
    right.set_xticks(
        sizes, [f"{size:,.1f} MB\n({m['rows'] // CHUNK}x chunk)" for size, m in zip(sizes, memory, strict=True)]
    )
    right.minorticks_off()
    right.set_ylim(0, max(m["rss_mb"] for m in memory) * 1.3)
    right.set_xlabel("input CSV size (log scale)")
    right.set_ylabel("peak RSS (MB)")
    right.set_title("memory stays flat as the file grows")
    figure.tight_layout()
    figure.savefig(coldstart.RESULTS / "batch.png", dpi=110)


if __name__ == "__main__":
    main()
