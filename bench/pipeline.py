"""Pipelines side by side: one request running three models vs the client chaining the calls itself.

    python bench/pipeline.py [--rounds 300] [--cold-runs 5]

One ``functions/digits-ensemble`` server (functions-framework, as deployed) answers:

- the pipeline: ``POST /v2/models/ensemble/infer``, one request, pca -> logreg and mlp run inside;
- the client-side chain: the same three models called by the client, ``pca`` then ``logreg``
  with its answer, and ``mlp``: three requests, the same numbers;
- one model alone (``mlp``), the floor of one HTTP round trip.

Warm latency: each round sends one of each, in rotated order, so noise spreads evenly.
Cold start: spawn to the first answer of the ensemble function's pipeline vs the digits
function's model, interleaved. Writes bench/results/pipeline.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import coldstart  # noqa: E402

ENSEMBLE = ROOT / "functions" / "digits-ensemble"
ROW = [float(v) for v in range(64)]


def body(name: str, values: list[float]) -> bytes:
    return json.dumps(
        {"inputs": [{"name": name, "shape": [1, len(values)], "datatype": "FP32", "data": values}]}
    ).encode()


def post(url: str, data: bytes) -> dict:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def outputs(answer: dict) -> dict[str, list[float]]:
    return {output["name"]: output["data"] for output in answer["outputs"]}


def pipeline(base: str) -> list[float]:
    return outputs(post(f"{base}/v2/models/ensemble/infer", body("pixels", ROW)))["logreg_probabilities"]


def client_chain(base: str) -> list[float]:
    components = outputs(post(f"{base}/v2/models/pca/infer", body("pixels", ROW)))["components"]
    chained = outputs(post(f"{base}/v2/models/logreg/infer", body("components", components)))["probabilities"]
    post(f"{base}/v2/models/mlp/infer", body("pixels", ROW))
    return chained


def one_model(base: str) -> list[float]:
    return outputs(post(f"{base}/v2/models/mlp/infer", body("pixels", ROW)))["probabilities"]


WARM = {"pipeline (1 request, 3 models)": pipeline, "client chains 3 requests": client_chain,
        "one model (mlp), 1 request": one_model}  # fmt: skip


def warm(rounds: int) -> dict[str, list[float]]:
    port = coldstart.free_port()
    command = [*coldstart.FF, "--source", str(ENSEMBLE / "main.py"), "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with coldstart.server(command) as process:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert abs(sum(pipeline(base)) - 1) < 1e-4  # loads every model; the answer is a distribution
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the ensemble function did not start") from None
                time.sleep(0.05)
        assert pipeline(base) == client_chain(base), "the two ways must give the same numbers"
        samples: dict[str, list[float]] = {label: [] for label in WARM}
        labels = list(WARM)
        for index in range(rounds + 20):
            for label in labels[index % 3 :] + labels[: index % 3]:
                started = time.perf_counter()
                WARM[label](base)
                if index >= 20:  # the first rounds warm the connection paths
                    samples[label].append(time.perf_counter() - started)
        return samples


def cold(runs: int) -> dict[str, list[float]]:
    systems = {
        "digits function, first answer of its model": (coldstart.DIGITS, "/v2/models/digits/infer"),
        "digits-ensemble function, first answer of the pipeline": (ENSEMBLE, "/v2/models/ensemble/infer"),
    }
    samples: dict[str, list[float]] = {label: [] for label in systems}
    labels = list(systems)
    for run in range(runs):
        for label in labels[run % 2 :] + labels[: run % 2]:
            folder, path = systems[label]
            port = coldstart.free_port()
            command = [*coldstart.FF, "--source", str(folder / "main.py"), "--port", str(port)]
            samples[label].append(coldstart.time_server(command, path, body("pixels", ROW), port))
    return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description="Pipelines side by side.")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--cold-runs", type=int, default=5)
    args = parser.parse_args()
    subprocess.run(
        [sys.executable, "-m", "modelfn", "check", str(ENSEMBLE / "ensemble")], check=True, capture_output=True
    )  # fmt: skip  (compiles the contracts, as `modelfn serve` would)
    warm_samples = warm(args.rounds)
    cold_samples = cold(args.cold_runs)
    lines = [
        f"Pipelines side by side ({args.rounds} interleaved rounds warm, {args.cold_runs} cold; "
        f"{os.cpu_count()} CPUs; one row, HTTP on loopback).",
        "",
        "| warm, digits-ensemble function | p50 | p99 |",
        "|---|---:|---:|",
    ]
    for label, values in warm_samples.items():
        lines.append(
            f"| {label} | {statistics.median(values) * 1000:.2f} ms | {percentile(values, 0.99) * 1000:.2f} ms |"
        )
    ratio = statistics.median(warm_samples["client chains 3 requests"]) / statistics.median(
        warm_samples["pipeline (1 request, 3 models)"]
    )
    lines += ["", "| cold start (spawn to first answer) | median |", "|---|---:|"]
    for label, values in cold_samples.items():
        lines.append(f"| {label} | {statistics.median(values) * 1000:,.0f} ms |")
    lines += ["", f"The pipeline answers {ratio:.1f}x faster than the client chaining the same three calls."]
    coldstart.RESULTS.mkdir(parents=True, exist_ok=True)
    (coldstart.RESULTS / "pipeline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
