"""Slow clients, side by side: normal clients' latency while N connections send half a request.

    python bench/load.py --slow-clients-only [--slow-seconds 10]

For 0, 8 and 64 partial connections (in turn: an unfinished head, a declared body never sent, a
stalled chunked body, a single byte), each reopened as soon as the server closes it, as an attacker
would, four normal clients send one-image ``POST /predict`` requests for ``--slow-seconds``, each
with a 5 s client timeout. Two servers on the same digits function:

- **modelfn**: ``python -m modelfn.adapters.server`` (the server of ``modelfn serve`` and Cloud Run images);
- **functions-framework**: its own command, gunicorn's threaded worker with its defaults
  (``4 x CPUs`` threads, no time limit on receiving a request).

Reported per server and N: answered requests, requests that timed out or failed, and the p50/p99
latency of all of them (a timed-out request counts at its 5 s). Writes bench/results/slow_clients.*.
"""

from __future__ import annotations

import json
import os
import select
import socket
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import coldstart  # noqa: E402

DIGITS = HERE.parent / "functions" / "digits"
BODY = json.dumps({"image": [[0, 2, 13, 16, 10, 0, 0, 0]] * 8}).encode()
PARTIAL = [
    b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{",
    b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{",
    b"G",
]
COUNTS = (0, 8, 64)
CLIENTS = 4
CLIENT_TIMEOUT_S = 5.0
SERVERS = {
    "modelfn": lambda port: [sys.executable, "-m", "modelfn.adapters.server", "--source", str(DIGITS / "main.py"),
                             "--host", "127.0.0.1", "--port", str(port)],
    "functions-framework": lambda port: [*coldstart.FF, "--source", str(DIGITS / "main.py"), "--port", str(port)],
}  # fmt: skip


class PartialConnections:
    """``count`` connections that each send part of a request, reopened when the server closes one."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.sockets: list[socket.socket] = []
        self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def __enter__(self) -> PartialConnections:
        self.sockets = [self._open(index) for index in range(self.count)]
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.sockets:
            sock.close()

    def _open(self, index: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port))
        sock.sendall(PARTIAL[index % len(PARTIAL)])
        return sock

    def _hold(self) -> None:
        while not self._stop.wait(0.1):
            if not self.sockets:
                continue
            readable, _, _ = select.select(self.sockets, [], [], 0)
            for sock in readable:  # answered (408) or closed: open another
                index = self.sockets.index(sock)
                sock.close()
                self.sockets[index] = self._open(index)
                self.reopened += 1


def normal_clients(url: str, seconds: float) -> dict:
    results: list[tuple[bool, float]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < deadline:
            request = urllib.request.Request(url, data=BODY, headers={"Content-Type": "application/json"})
            began = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=CLIENT_TIMEOUT_S) as response:
                    ok = response.status == 200
                    response.read()
            except (OSError, urllib.error.URLError):
                ok = False
            took = min(time.perf_counter() - began, CLIENT_TIMEOUT_S)
            with lock:
                results.append((ok, took))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies = sorted(took * 1000 for _, took in results)
    return {
        "answered": sum(ok for ok, _ in results),
        "failed": sum(not ok for ok, _ in results),
        "p50_ms": statistics.median(latencies) if latencies else 0.0,
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else 0.0,
    }


def measure(seconds: float) -> dict:
    found: dict[str, dict] = {}
    for name, command in SERVERS.items():
        port = coldstart.free_port()
        with coldstart.server(command(port)):
            base = f"http://127.0.0.1:{port}"
            coldstart.wait_ready(base)
            normal_clients(base + "/predict", 2)  # warm
            for count in COUNTS:
                with PartialConnections(port, count) as partial:
                    time.sleep(0.5)  # let them take their places
                    run = normal_clients(base + "/predict", seconds)
                    run["reopened"] = partial.reopened
                found.setdefault(name, {})[str(count)] = run
                print(name, count, run, flush=True)
    return found


def write(found: dict, seconds: float) -> None:
    results = HERE / "results"
    lines = [
        "# Slow clients, side by side",
        "",
        f"`python bench/load.py --slow-clients-only` on {os.cpu_count()} CPUs: {CLIENTS} normal clients send "
        f"one-image `POST /predict` requests for {seconds:g} s (client timeout {CLIENT_TIMEOUT_S:g} s) while N "
        "connections each send part of a request (an unfinished head, a declared body never sent, a stalled "
        "chunked body, one byte), reopened as soon as the server closes them.",
        "",
        "| Server | Partial connections | Answered | Timed out or failed | p50 ms | p99 ms "
        "| Partial ones closed by the server |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in found.items():
        for count, run in runs.items():
            lines.append(f"| {name} | {count} | {run['answered']:,} | {run['failed']:,} | {run['p50_ms']:.1f} | "
                         f"{run['p99_ms']:.1f} | {run['reopened']} |")  # fmt: skip
    ours, theirs = found["modelfn"], found["functions-framework"]
    lines += [
        "",
        f"With 64 partial connections, modelfn's normal clients had a p99 of {ours['64']['p99_ms']:.1f} ms "
        f"({ours['0']['p99_ms']:.1f} ms with none) and {ours['64']['failed']} failures; functions-framework's "
        f"server answered {theirs['64']['answered']} requests and {theirs['64']['failed']} timed out: its "
        "threads were all held reading the partial requests.",
        "",
        "![slow clients](slow_clients.png)",
        "",
    ]
    (results / "slow_clients.md").write_text("\n".join(lines))
    (results / "slow_clients.json").write_text(json.dumps(found, indent=1) + "\n")
    _plot(found, results / "slow_clients.png")


def _plot(found: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.6))
    width = 0.38
    for offset, (name, runs) in zip((-width / 2, width / 2), found.items(), strict=True):
        values = [runs[str(count)]["p99_ms"] for count in COUNTS]
        bars = axis.bar([i + offset for i in range(len(COUNTS))], values, width, label=name)
        axis.bar_label(bars, labels=[f"{v:.0f}" for v in values], fontsize=8)
    axis.set_xticks(range(len(COUNTS)), [f"{count} partial" for count in COUNTS])
    axis.set_yscale("log")
    axis.set_ylabel("normal clients' p99, ms (log)")
    axis.set_title("Normal clients while connections send half a request")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(seconds: float) -> None:
    found = measure(seconds)
    write(found, seconds)
