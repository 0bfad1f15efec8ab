"""Cold start, spawn to first answered prediction, side by side in one run.

    python bench/coldstart.py [--runs 7]

Systems are interleaved run by run, the order rotated each round (A B C D,
B C D A, ...), so machine noise and neighbour effects spread evenly.
Writes bench/results/coldstart.md and coldstart.png.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "functions" / "digits"
RESULTS = ROOT / "bench" / "results"
IMAGE = [0.0] * 64
FF = [sys.executable, "-m", "functions_framework", "--target", "handle", "--host", "127.0.0.1"]


def rotated(items: Sequence, run: int) -> list:
    """``items`` started at position ``run``, wrapping: each leads once per len(items) runs, no fixed neighbour."""
    shift = run % len(items)
    return [*items[shift:], *items[:shift]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def oip_body() -> bytes:
    import json

    return json.dumps({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": IMAGE}]}).encode()


SYSTEMS = {
    "modelfn (functions-framework, lazy load)": lambda port: (
        [*FF, "--source", str(DIGITS / "main.py"), "--port", str(port)],
        "/v2/models/digits/infer",
        oip_body(),
    ),
    "modelfn serve (CLI, then the same)": lambda port: (
        [sys.executable, "-m", "modelfn", "serve", str(DIGITS), "--port", str(port)],
        "/v2/models/digits/infer",
        oip_body(),
    ),
    "modelfn, prefetch (MODELFN_PREFETCH=1)": lambda port: (
        [*FF, "--source", str(DIGITS / "main.py"), "--port", str(port)],
        "/v2/models/digits/infer",
        oip_body(),
        {"MODELFN_PREFETCH": "1"},
    ),
    "floor: hand-written functions-framework function": lambda port: (
        [*FF, "--source", str(ROOT / "bench/floors/handwritten_main.py"), "--port", str(port)],
        "/",
        b'{"pixels": [[' + b",".join([b"0.0"] * 64) + b"]]}",
    ),
    "floor: functions-framework answering a constant (HTTP, no model)": lambda port: (
        [*FF, "--source", str(ROOT / "bench/floors/constant_main.py"), "--port", str(port)],
        "/",
        b"{}",
    ),
}


def wait_ready(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(base + "/v2/health/ready", timeout=30).status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not get ready")


@contextlib.contextmanager
def server(command: list[str], extra_env: dict | None = None) -> Iterator[subprocess.Popen]:
    """A quiet server process in its own process group, the whole group killed on leaving.

    The whole group: gunicorn's forked worker (or MLServer's inference pool) must not
    outlive the run and steal CPU from the next system. Nothing measured needs a grace period.
    """
    env = {**os.environ, "MODELFN_LOG_LEVEL": "WARNING", **(extra_env or {})}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        time.sleep(0.2)


def time_server(command: list[str], path: str, body: bytes, port: int, extra_env: dict | None = None) -> float:
    """Seconds from spawn to the first 200 answer to a prediction request."""
    started = time.perf_counter()
    with server(command, {"BENCH_MODEL": str(DIGITS / "model.onnx"), **(extra_env or {})}) as process:
        url = f"http://127.0.0.1:{port}{path}"
        while True:
            try:
                request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=30) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None:
                    raise RuntimeError(f"{command} exited with {process.returncode}") from None
                time.sleep(0.002)


def time_first_request_after_idle(name: str, idle_s: float = 1.0) -> float:
    """Seconds the first prediction takes on an instance that was up (answering) ``idle_s`` before it."""
    port = free_port()
    command, path, body, *extra_env = SYSTEMS[name](port)
    with server(command, {"BENCH_MODEL": str(DIGITS / "model.onnx"), **(extra_env[0] if extra_env else {})}):
        while True:  # up: the port answers (a 404 or 405 will do; nothing is predicted yet)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing-here", timeout=5):
                    break
            except urllib.error.HTTPError:
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.01)
        time.sleep(idle_s)  # a minimum instance, started ahead of traffic
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", data=body, headers={"Content-Type": "application/json"}
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
        return time.perf_counter() - started


def time_bare_script() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "bench/floors/bare_onnx.py"), str(DIGITS / "model.onnx")], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description="Cold start side by side.")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    samples: dict[str, list[float]] = {"floor: bare script (import onnxruntime, session, 1 prediction; no HTTP)": []}
    samples.update({name: [] for name in SYSTEMS})
    # The build step a deployment runs: validates the contract and writes its compiled copy.
    subprocess.run([sys.executable, "-m", "modelfn", "check", str(DIGITS)], check=True, capture_output=True)
    time_bare_script()  # warm the OS file cache once so run 1 is not special
    bare = next(iter(samples))
    order = [bare, *SYSTEMS]
    for run in range(args.runs):
        for name in rotated(order, run):
            if name == bare:
                samples[name].append(time_bare_script())
            else:
                port = free_port()
                command, path, body, *extra_env = SYSTEMS[name](port)
                samples[name].append(time_server(command, path, body, port, *extra_env))
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    idle_systems = [
        "modelfn (functions-framework, lazy load)",
        "modelfn, prefetch (MODELFN_PREFETCH=1)",
        "floor: hand-written functions-framework function",
        "floor: functions-framework answering a constant (HTTP, no model)",
    ]
    idle: dict[str, list[float]] = {name: [] for name in idle_systems}
    for _ in range(max(3, args.runs // 3)):
        for name in idle_systems:
            idle[name].append(time_first_request_after_idle(name))
    write_results(samples, args.runs, idle)


def write_results(samples: dict[str, list[float]], runs: int, idle: dict[str, list[float]]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    reference = statistics.median(samples["floor: hand-written functions-framework function"])
    lines = [
        f"Cold start, spawn to first answered prediction (digits model; {runs} interleaved runs, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}).",
        "",
        "| system | median | min | max | vs hand-written |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in samples.items():
        median = statistics.median(values)
        lines.append(
            f"| {name} | {median * 1000:.0f} ms | {min(values) * 1000:.0f} ms | {max(values) * 1000:.0f} ms "
            f"| {median / reference:.2f}x |"
        )
    lines += [
        "",
        f"First prediction on an instance that was live 1 s before it (a minimum instance; "
        f"{len(next(iter(idle.values())))} runs each):",
        "",
        "| system | median | max |",
        "|---|---:|---:|",
    ]
    for name, values in idle.items():
        lines.append(f"| {name} | {statistics.median(values) * 1000:.1f} ms | {max(values) * 1000:.1f} ms |")
    (RESULTS / "coldstart.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(samples)


def plot(samples: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(samples)
    medians = [statistics.median(samples[n]) * 1000 for n in names]
    low = [m - min(samples[n]) * 1000 for m, n in zip(medians, names, strict=True)]
    high = [max(samples[n]) * 1000 - m for m, n in zip(medians, names, strict=True)]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(names) + 1))
    colors = ["#9aa5b1", "#1f77b4", "#6baed6", "#2ca02c", "#f2a541", "#c7c7c7"]
    ax.barh(range(len(names)), medians, xerr=[low, high], color=colors[: len(names)], capsize=4)
    ax.set_yticks(range(len(names)), [n.split(" (")[0].replace(" functions-framework function", "") for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("spawn to first answered prediction (ms, median; bars: min-max)")
    for i, (value, name) in enumerate(zip(medians, names, strict=True)):
        ax.text(max(samples[name]) * 1000 + 10, i, f"{value:.0f} ms", va="center")
    ax.set_xlim(0, max(max(v) for v in samples.values()) * 1000 * 1.18)
    ax.set_title(f"Cold start, digits model ({len(next(iter(samples.values())))} interleaved runs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(RESULTS / "coldstart.png", dpi=110)


if __name__ == "__main__":
    main()
