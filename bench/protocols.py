"""REST JSON, REST binary and gRPC to the same modelfn function, side by side, with Triton's own clients.

    python bench/compare.py --protocols-only [--runs 3] [--seconds 8]

For digits and MobileNetV2, each protocol against its own server process of the same folder:
``tritonclient.http`` with JSON tensors and with the binary tensor extension against the HTTP server
(``python -m modelfn.adapters.server``, as deployed), ``tritonclient.grpc`` against the gRPC one
(``MODELFN_SERVE=grpc``). Cold start is spawn to the first answered inference (median of
``--runs``, protocols interleaved and rotated); then closed-loop load at concurrency 1 and 8 for
``--seconds`` each, one client process per connection (Python clients share the GIL otherwise):
requests per second and p50/p99. The clients and servers share the machine's CPUs alike.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import coldstart  # noqa: E402

PROTOCOLS = ("REST JSON", "REST binary", "gRPC")
LEVELS = (1, 8)


def inputs(model: str) -> tuple[str, np.ndarray]:
    shape = (1, 64) if model == "digits" else (1, 224, 224, 3)
    x = np.random.default_rng(0).random(shape, dtype=np.float32) * (16 if model == "digits" else 1)
    return ("pixels" if model == "digits" else "image"), x


def command(folder: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "modelfn.adapters.server", "--source", str(folder / "main.py"),
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip


def environment(protocol: str) -> dict[str, str]:
    return {"MODELFN_LOG_LEVEL": "WARNING", "MODELFN_SERVE": "grpc" if protocol == "gRPC" else "http"}


def caller(protocol: str, port: int, model: str) -> Any:
    """A function that sends one inference and returns when it is answered."""
    name, x = inputs(model)
    if protocol == "gRPC":
        import tritonclient.grpc as client_module

        client = client_module.InferenceServerClient(f"127.0.0.1:{port}")
    else:
        import tritonclient.http as client_module

        client = client_module.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=120)
    tensor = client_module.InferInput(name, list(x.shape), "FP32")
    if protocol == "REST JSON":
        tensor.set_data_from_numpy(x, binary_data=False)
        outputs = None  # every output, as JSON
    elif protocol == "REST binary":
        tensor.set_data_from_numpy(x, binary_data=True)
        outputs = [client_module.InferRequestedOutput("probabilities", binary_data=True)]
    else:
        tensor.set_data_from_numpy(x)
        outputs = [client_module.InferRequestedOutput("probabilities")]

    def call() -> None:
        client.infer(model, [tensor], outputs=outputs).as_numpy("probabilities")

    return call


def first_answer(process: Any, protocol: str, port: int, model: str) -> float:
    started = time.perf_counter()
    while True:
        try:
            # A new client each try: a gRPC channel that failed to connect waits out its reconnect
            # backoff (1 s) before the next attempt, which would be counted as the server's start.
            caller(protocol, port, model)()
            return time.perf_counter() - started
        except Exception:  # not listening yet (refused, unavailable), or still loading
            if process.poll() is not None:
                raise RuntimeError(f"{protocol} server exited with {process.returncode}") from None
            time.sleep(0.005)


def _worker(protocol: str, port: int, model: str, seconds: float, start_at: float, out: Any) -> None:
    call = caller(protocol, port, model)
    while time.time() < start_at:
        time.sleep(0.001)
    # This connection's first call is not measured; made after the wait, so that no server closes
    # the connection as idle in between (gunicorn's keep-alive is 2 s).
    call()
    latencies = []
    end = start_at + seconds
    while time.time() < end:
        began = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - began)
    out.put(latencies)


def load(protocol: str, port: int, model: str, concurrency: int, seconds: float) -> dict[str, float]:
    """Closed-loop load from ``concurrency`` client processes: req/s, p50 and p99 (ms)."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + 3.0  # every process started first
    workers = [context.Process(target=_worker, args=(protocol, port, model, seconds, start_at, results))
               for _ in range(concurrency)]  # fmt: skip
    for worker in workers:
        worker.start()
    latencies = sorted(value for _ in workers for value in results.get(timeout=seconds + 120))
    for worker in workers:
        worker.join()
    return {
        "rps": len(latencies) / seconds,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def run(models: dict[str, Path], runs: int, seconds: float) -> dict[str, dict[str, dict]]:
    results: dict[str, dict[str, dict]] = {}
    for model, folder in models.items():
        results[model] = {protocol: {"cold": [], "load": {}} for protocol in PROTOCOLS}
        for attempt in range(runs):
            for protocol in coldstart.rotated(list(PROTOCOLS), attempt):
                port = coldstart.free_port()
                with coldstart.server(command(folder, port), environment(protocol)) as process:
                    results[model][protocol]["cold"].append(first_answer(process, protocol, port, model))
        for protocol in PROTOCOLS:
            port = coldstart.free_port()
            with coldstart.server(command(folder, port), environment(protocol)) as process:
                first_answer(process, protocol, port, model)
                for level in LEVELS:
                    results[model][protocol]["load"][level] = load(protocol, port, model, level, seconds)
            print(f"{model}: {protocol} done", file=sys.stderr)
    return results


def write(results: dict[str, dict[str, dict]], runs: int, seconds: float) -> str:
    lines = [f"REST and gRPC to the same modelfn function, with tritonclient ({runs} interleaved cold starts, "
             f"{seconds:g} s of closed-loop load per point, one client process per connection, "
             f"{os.cpu_count()} CPUs shared by clients and server; medians).", ""]  # fmt: skip
    for model, table in results.items():
        lines += [f"**{model}**", "", "| protocol | cold start | req/s c1 | p50 c1 | req/s c8 | p50 c8 | p99 c8 |",
                  "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for protocol, entry in table.items():
            one, eight = entry["load"][1], entry["load"][8]
            lines.append(
                f"| {protocol} | {statistics.median(entry['cold']) * 1000:,.0f} ms | {one['rps']:,.0f} "
                f"| {one['p50']:.2f} ms | {eight['rps']:,.0f} | {eight['p50']:.2f} ms | {eight['p99']:.2f} ms |"
            )
        lines.append("")
    text = "\n".join(lines)
    coldstart.RESULTS.mkdir(parents=True, exist_ok=True)
    (coldstart.RESULTS / "compare_protocols.md").write_text(text)
    plot(results)
    return text


def plot(results: dict[str, dict[str, dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(10, 3.2))
    for ax, (model, table) in zip(axes, results.items(), strict=True):
        width = 0.38
        for offset, level in zip((-width / 2, width / 2), LEVELS, strict=True):
            rates = [table[protocol]["load"][level]["rps"] for protocol in PROTOCOLS]
            bars = ax.bar([i + offset for i in range(len(PROTOCOLS))], rates, width, label=f"c{level}")
            ax.bar_label(bars, fmt="{:,.0f}", fontsize=7)
        ax.set_xticks(range(len(PROTOCOLS)), PROTOCOLS)
        ax.set_ylabel("requests/s")
        ax.set_title(model, fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(coldstart.RESULTS / "compare_protocols.png", dpi=110)
