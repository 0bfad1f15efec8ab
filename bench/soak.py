"""A soak: steady mixed traffic against one served function, watching for leaks and latency drift.

``python bench/soak.py --seconds 1800`` serves ``functions/digits`` twice, as an image runs it: the
HTTP server and the gRPC server (``MODELFN_SERVE=grpc``). Client threads send, in a fixed mix: Open
Inference Protocol JSON and binary tensors, ``/predict`` through the hooks, photo uploads
(``multipart/form-data``), gRPC ``ModelInfer``, and bad requests (not JSON, a wrong shape, an unknown
model, a tensor over the limit). Every ``--sample-s`` seconds it reads, for each server's whole
process group, the resident memory, the open file descriptors and the threads, and the p99 of the
requests answered since the last sample.

It prints each quantity's growth per hour (a least-squares slope over the samples after the warm-up
tenth of the run) and the p99 over time, writes ``bench/results/soak.md``, ``soak.json`` and
``soak.png``, and exits 1 when a growth passes its threshold (:data:`THRESHOLDS`) or an answer was
wrong (a 5xx, or a good request refused).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import coldstart  # noqa: E402

DIGITS = ROOT / "functions" / "digits"
RESULTS = HERE / "results"
#: Growth per hour past which the soak fails. Memory: a leak of 1 KiB a request at ~100 req/s is
#: 350 MB/h, far past it; allocator noise and the metrics' label sets stay well below.
THRESHOLDS = {"rss_mb": 64.0, "fds": 8.0, "threads": 4.0}
#: The p99 of the last quarter may be at most this many times the first steady quarter's.
P99_DRIFT = 2.0
IMAGE = [[0, 2, 13, 16, 10, 0, 0, 0]] * 8
PIXELS = [float(v) for row in IMAGE for v in row]
OIP = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": PIXELS}]}


def photo() -> bytes:
    from PIL import Image

    grid = [[255 - v * 15 for v in row for _ in range(12)] for row in IMAGE for _ in range(12)]
    image = Image.new("L", (96, 96))
    image.putdata([v for row in grid for v in row])
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


class Tally:
    """Latencies since the last sample, and the counts of wrong answers, shared by the client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.requests = 0
        self.wrong: dict[str, int] = {}

    def record(self, kind: str, seconds: float, ok: bool) -> None:
        with self.lock:
            self.latencies.append(seconds)
            self.requests += 1
            if not ok:
                self.wrong[kind] = self.wrong.get(kind, 0) + 1

    def take(self) -> list[float]:
        with self.lock:
            taken, self.latencies = self.latencies, []
        return taken


def http_client(base: str, tally: Tally, stop: threading.Event, image: bytes) -> None:
    import numpy as np
    import requests

    blob = np.array(PIXELS, dtype="<f4").tobytes()
    header = json.dumps({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(blob)}}]}).encode()  # fmt: skip
    bad_shape = {"inputs": [{**OIP["inputs"][0], "shape": [1, 63]}]}
    huge = {"inputs": [{**OIP["inputs"][0], "shape": [10**6, 64]}]}
    mix = [  # (kind, method and arguments, the statuses that are right)
        ("oip-json", lambda s: s.post(f"{base}/v2/models/digits/infer", json=OIP, timeout=30), {200}),
        ("oip-binary", lambda s: s.post(f"{base}/v2/models/digits/infer", data=header + blob, timeout=30,
                                        headers={"Inference-Header-Content-Length": str(len(header))}), {200}),
        ("predict", lambda s: s.post(f"{base}/predict", json={"image": IMAGE}, timeout=30), {200}),
        ("upload", lambda s: s.post(f"{base}/predict", files={"image": ("d.png", image, "image/png")}, timeout=30),
         {200}),
        ("bad-json", lambda s: s.post(f"{base}/v2/models/digits/infer", data=b'{"inputs": [', timeout=30), {400}),
        ("bad-shape", lambda s: s.post(f"{base}/v2/models/digits/infer", json=bad_shape, timeout=30), {400}),
        ("unknown", lambda s: s.post(f"{base}/v2/models/nope/infer", json=OIP, timeout=30), {404}),
        ("too-big", lambda s: s.post(f"{base}/v2/models/digits/infer", json=huge, timeout=30), {400, 413}),
    ]  # fmt: skip
    with requests.Session() as session:
        turn = 0
        while not stop.is_set():
            kind, send, right = mix[turn % len(mix)]
            turn += 1
            started = time.perf_counter()
            try:
                status = send(session).status_code
            except requests.RequestException:
                status = 0
            tally.record(kind, time.perf_counter() - started, status in right)


def grpc_client(address: str, tally: Tally, stop: threading.Event) -> None:
    import numpy as np
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(address)
    tensor = triton.InferInput("pixels", [1, 64], "FP32")
    tensor.set_data_from_numpy(np.array([PIXELS], dtype=np.float32))
    while not stop.is_set():
        started = time.perf_counter()
        try:
            ok = client.infer("digits", [tensor], client_timeout=30).as_numpy("label").shape == (1,)
        except Exception:  # any failure of the call is a wrong answer, counted
            ok = False
        tally.record("grpc", time.perf_counter() - started, ok)
    client.close()


def group_usage(leader: int) -> dict[str, float]:
    """Resident MiB, open descriptors and threads of a server's whole process group (/proc)."""
    rss = fds = threads = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != leader:
                continue
            status = dict(line.split(":", 1) for line in (entry / "status").read_text().splitlines() if ":" in line)
            rss += int(status["VmRSS"].split()[0]) / 1024
            threads += int(status["Threads"])
            fds += len(os.listdir(entry / "fd"))
        except (OSError, KeyError, ValueError):
            continue  # a process that just ended
    return {"rss_mb": rss, "fds": fds, "threads": threads}


def slope_per_hour(times: list[float], values: list[float]) -> float:
    """The least-squares slope of ``values`` over ``times`` (seconds), per hour."""
    if len(times) < 2:
        return 0.0
    mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
    spread = sum((t - mean_t) ** 2 for t in times)
    if spread == 0:
        return 0.0
    return 3600 * sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True)) / spread


def p99(values: list[float]) -> float:
    return sorted(values)[int(0.99 * (len(values) - 1))] * 1000 if values else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=1800)
    parser.add_argument("--sample-s", type=float, default=15.0)
    parser.add_argument("--http-clients", type=int, default=3)
    parser.add_argument("--grpc-clients", type=int, default=1)
    args = parser.parse_args()
    http_port, grpc_port = coldstart.free_port(), coldstart.free_port()
    source = ["--source", str(DIGITS / "main.py"), "--host", "127.0.0.1"]
    http_command = [sys.executable, "-m", "modelfn.adapters.server", *source, "--port", str(http_port)]
    grpc_command = [sys.executable, "-m", "modelfn.adapters.server", *source, "--port", str(grpc_port)]
    tally, stop = Tally(), threading.Event()
    samples: list[dict] = []
    with coldstart.server(http_command) as http, coldstart.server(grpc_command, {"MODELFN_SERVE": "grpc"}) as grpc:
        base = f"http://127.0.0.1:{http_port}"
        coldstart.wait_ready(base)
        image = photo()
        clients = [threading.Thread(target=http_client, args=(base, tally, stop, image))
                   for _ in range(args.http_clients)]  # fmt: skip
        clients += [threading.Thread(target=grpc_client, args=(f"127.0.0.1:{grpc_port}", tally, stop))
                    for _ in range(args.grpc_clients)]  # fmt: skip
        for client in clients:
            client.start()
        began = time.monotonic()
        try:
            while time.monotonic() - began < args.seconds:
                time.sleep(args.sample_s)
                latencies = tally.take()
                sample = {"t": time.monotonic() - began, "requests": len(latencies), "p99_ms": p99(latencies),
                          "http": group_usage(os.getpgid(http.pid)),
                          "grpc": group_usage(os.getpgid(grpc.pid))}  # fmt: skip
                samples.append(sample)
                h = sample["http"]
                print(f"{sample['t']:7.0f} s {len(latencies) / args.sample_s:6.1f} req/s p99 {sample['p99_ms']:7.1f} ms"
                      f"  http {h['rss_mb']:6.1f} MiB {h['fds']:4.0f} fds {h['threads']:3.0f} threads"
                      f"  grpc {sample['grpc']['rss_mb']:6.1f} MiB {sample['grpc']['threads']:3.0f} threads",
                      flush=True)  # fmt: skip
        finally:
            stop.set()
            for client in clients:
                client.join(60)
    return report(args, samples, tally)


def report(args: argparse.Namespace, samples: list[dict], tally: Tally) -> int:
    steady = samples[max(1, len(samples) // 10) :]
    times = [s["t"] for s in steady]
    growth = {f"{server} {what}": slope_per_hour(times, [s[server][what] for s in steady])
              for server in ("http", "grpc") for what in THRESHOLDS}  # fmt: skip
    quarter = max(1, len(steady) // 4)
    first, last = (
        statistics.median(s["p99_ms"] for s in steady[:quarter]),
        statistics.median(s["p99_ms"] for s in steady[-quarter:]),
    )
    failures = [f"{name} grows {value:+.1f}/h, over {THRESHOLDS[name.split()[1]]}/h"
                for name, value in growth.items() if value > THRESHOLDS[name.split()[1]]]  # fmt: skip
    if last > P99_DRIFT * first:
        failures.append(f"p99 drifted from {first:.1f} ms to {last:.1f} ms (over {P99_DRIFT}x)")
    if tally.wrong:
        failures.append(f"wrong answers: {tally.wrong}")
    lines = [
        f"Soak: {args.seconds} s of steady mixed traffic ({args.http_clients} HTTP and {args.grpc_clients} gRPC "
        f"client threads, 2 CPUs shared with the servers); {tally.requests:,} requests, "
        f"{tally.requests / max(1, args.seconds):,.0f} req/s; a sample every {args.sample_s:g} s.",
        "",
        "| growth per hour (after the first tenth) | value | threshold |",
        "|---|---:|---:|",
        *(f"| {name} | {value:+.2f} | {THRESHOLDS[name.split()[1]]:g} |" for name, value in growth.items()),
        f"| p99, first steady quarter -> last quarter | {first:.1f} ms -> {last:.1f} ms | {P99_DRIFT:g}x |",
        "",
        f"Wrong answers (a 5xx, a refused good request, a failed gRPC call): {sum(tally.wrong.values())}.",
        f"Verdict: {'FAIL: ' + '; '.join(failures) if failures else 'pass'}.",
    ]
    print("\n".join(lines))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "soak.json").write_text(json.dumps({"samples": samples, "growth_per_hour": growth,
                                                    "wrong": tally.wrong}, indent=1) + "\n")  # fmt: skip
    plot(samples)
    return 1 if failures else 0


def plot(samples: list[dict]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    minutes = [s["t"] / 60 for s in samples]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for server in ("http", "grpc"):
        axes[0].plot(minutes, [s[server]["rss_mb"] for s in samples], label=f"{server} RSS (MiB)")
        axes[1].plot(minutes, [s[server]["fds"] for s in samples], label=f"{server} fds")
        axes[1].plot(minutes, [s[server]["threads"] for s in samples], "--", label=f"{server} threads")
    axes[2].plot(minutes, [s["p99_ms"] for s in samples], color="black", label="p99 (ms)")
    for axis in axes:
        axis.set_xlabel("minutes")
        axis.legend(fontsize=8)
    figure.suptitle("bench/soak.py: memory, descriptors, threads and p99 over the soak")
    figure.tight_layout()
    figure.savefig(RESULTS / "soak.png", dpi=110)


if __name__ == "__main__":
    sys.exit(main())
