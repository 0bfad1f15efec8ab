"""Batch prediction side by side: a 100k-row CSV through the batch path, and one HTTP request per row.

    python bench/batch.py [--rounds 3] [--seconds 8]     (needs wrk: apt-get install wrk)

- **Batch path**: ``modelfn batch functions/digits rows.csv`` in a fresh process (start-up and
  model load included), and the job's own time from its summary.
- **One request per row**: the same digits function under functions-framework, one-row OIP
  requests from wrk at concurrency 1 and 8; rows per second = requests per second.

The two alternate round by round. Then peak memory: ``modelfn batch`` (1,000-row chunks) over
files of 10x, 100x and 500x the chunk, each in a fresh process, its peak RSS from getrusage().

Then the batch engines (``bench/engines.py``) on the same 100,000 rows in four CSV files: the single
process, Beam with 1 and 2 local workers, Spark on 1 and 2 cores, interleaved round by round; and
what those figures say of Dataflow (arithmetic, stated as such). ``--engines-only`` runs just that
part. Writes bench/results/batch.md, batch.png and batch_engines.png.
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
import engines  # noqa: E402

DIGITS = ROOT / "functions" / "digits"
ROWS = 100_000
CHUNK = 1000
MEMORY_ROWS = (10 * CHUNK, 100 * CHUNK, 500 * CHUNK)
CONCURRENCY = (1, 8)
PARTS = 4
#: Assumed for the Dataflow arithmetic (not measured here): a flex template job's launch and its
#: workers' start before the first row, and the vCPUs of the contract's default n2-standard-4.
DATAFLOW_START_S = 240
DATAFLOW_VCPUS = 4
#: Cloud Functions' longest event function (the single-machine job's ceiling there).
FUNCTION_LIMIT_S = 540


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
    parser.add_argument("--engines-only", action="store_true", help="only the batch engines' part")
    args = parser.parse_args()
    if args.engines_only:
        write_engines(measure_engines(args.rounds), args)
        return
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
    write_engines(measure_engines(args.rounds), args)


def measure_engines(rounds: int) -> dict[str, list[dict[str, float]]]:
    """Every engine over the same four CSV files, the order rotated each round (``bytes``: their size)."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in engines.ENGINES}
    with tempfile.TemporaryDirectory(prefix="modelfn-bench-engines-") as name:
        scratch = Path(name)
        (scratch / "parts").mkdir()
        for part in range(PARTS):
            write_csv(scratch / "parts" / f"part-{part}.csv", ROWS // PARTS)
        pattern = str(scratch / "parts" / "part-*.csv")
        runs["bytes"] = [{"size": sum(path.stat().st_size for path in (scratch / "parts").glob("*.csv"))}]
        for round_number in range(rounds):
            for engine in coldstart.rotated(list(engines.ENGINES), round_number):
                result = engines.ENGINES[engine](DIGITS, pattern, scratch / "out")
                assert result["rows"] == ROWS, (engine, result)
                runs[engine].append(result)
                print(f"round {round_number + 1}: {engine}: {result}", flush=True)
    return runs


def write_engines(runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    """Append the engines' table and the Dataflow arithmetic to batch.md; draw batch_engines.png."""
    row_bytes = runs.pop("bytes")[0]["size"] / ROWS
    job = {name: statistics.median(ROWS / r["job"] for r in each) for name, each in runs.items()}
    wall = {name: statistics.median(ROWS / r["wall"] for r in each) for name, each in runs.items()}
    single = job["single process"]
    lines = [
        "",
        f"## The batch engines: {ROWS:,} digits rows in {PARTS} CSV files, every prediction written",
        "",
        f"Medians of {args.rounds} interleaved rounds, a fresh process each, {os.cpu_count()} CPUs "
        "(`bench/engines.py`). *Job*: from the model's load to the last summary (Spark: around its write); "
        "*command*: the whole process, with the JVM or the pipeline's set-up.",
        "",
        "| engine | rows/s (job) | rows/s (command) | job vs single process |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {job[name]:,.0f} | {wall[name]:,.0f} | {job[name] / single:.2f}x |" for name in runs]
    beam1, beam2 = job["Beam, 1 worker"], job["Beam, 2 workers"]
    efficiency = min(1.0, beam2 / (2 * beam1))
    per_vcpu = beam1 * efficiency
    lines += [
        "",
        "### What this says of Dataflow (arithmetic, not a measurement)",
        "",
        f"Beam's Python workers run one SDK process per vCPU. Here one worker process predicts {beam1:,.0f} rows/s "
        f"and two reach {beam2:,.0f} ({efficiency:.0%} of twice one). Assuming that per-process rate and that "
        f"efficiency hold on Dataflow, and {DATAFLOW_START_S} s from launch to the first row (a flex template's "
        f"launcher and the workers' start; assumed, not measured), a job on W n2-standard-4 workers "
        f"({DATAFLOW_VCPUS} vCPUs) predicts about W x {DATAFLOW_VCPUS} x {per_vcpu:,.0f} rows/s after its start. "
        f"The storage function runs the single-process job ({single:,.0f} rows/s here) for at most "
        f"{FUNCTION_LIMIT_S} s on Cloud Functions.",
        "",
        "| rows in the file | function (single process) | Dataflow, 10 workers | Dataflow, 100 workers |",
        "|---:|---:|---:|---:|",
    ]
    for rows in (1_000_000, 10_000_000, 100_000_000, 1_000_000_000):
        function = rows / single
        shown = f"{function:,.0f} s" + (" (over the limit)" if function > FUNCTION_LIMIT_S else "")
        flows = [DATAFLOW_START_S + rows / (workers * DATAFLOW_VCPUS * per_vcpu) for workers in (10, 100)]
        lines.append(f"| {rows:,} | {shown} | {flows[0]:,.0f} s | {flows[1]:,.0f} s |")
    ten = 10 * DATAFLOW_VCPUS * per_vcpu
    crossover = DATAFLOW_START_S * single * ten / (ten - single) if ten > single else float("inf")
    lines += [
        "",
        f"Break-even with 10 workers: about {crossover:,.0f} rows ({crossover * row_bytes / 1e6:,.0f} MB of this CSV), "
        "below which the function finishes first; the function's time limit caps it at about "
        f"{single * FUNCTION_LIMIT_S:,.0f} rows.",
    ]
    text = "\n".join(lines) + "\n"
    path = coldstart.RESULTS / "batch.md"
    existing = path.read_text().split("\n## The batch engines")[0].rstrip("\n") + "\n" if path.exists() else ""
    path.write_text(existing + text)
    print(text)
    plot_engines(job, wall)


def plot_engines(job: dict[str, float], wall: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 3.4))
    names = list(job)
    positions = range(len(names))
    axis.barh([p - 0.2 for p in positions], [job[n] for n in names], height=0.4, color="#2b6cb0", label="job")
    axis.barh([p + 0.2 for p in positions], [wall[n] for n in names], height=0.4, color="#a0aec0",
              label="whole command")  # fmt: skip
    axis.set_yticks(list(positions), names)
    axis.invert_yaxis()
    axis.set_xlabel(f"rows per second ({ROWS:,} digits rows, {PARTS} CSV files, {os.cpu_count()} CPUs)")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(coldstart.RESULTS / "batch_engines.png", dpi=110)


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
