"""Load, memory and overload of a live server (needs wrk: apt-get install wrk).

    python bench/load.py [--seconds 60] [--mix-seconds 30] [--overload-seconds 15] [--slow-seconds 10]
    python bench/load.py --slow-clients-only     # section 4 alone; needs no wrk

1. **Sustained load**: the digits function under ``python -m modelfn.adapters.server``
   (functions-framework's app, 64 threads), warmed up for 10 s, then wrk for ``--seconds``
   at 64 connections on one-row OIP requests. Failed requests (non-2xx, socket errors) and
   the worker's RSS after warm-up and at the end.
2. **Any request mix**: wrk at 64 connections cycling through valid requests of every
   protocol and invalid ones (bad JSON, wrong shape, nesting 64 deep, a 100 KB string,
   an oversized shape, an unknown model). Counted by status: no 5xx expected. RSS at the end.
3. **Overload**, side by side: a function whose model takes 50 ms (2 call slots: 40
   requests/s at most) offered 64 concurrent clients, once with modelfn's bounded queue
   (``MODELFN_MAX_QUEUE=4``) and once with a queue as long as the clients
   (``MODELFN_MAX_QUEUE=64``, every request waits its turn, as in a server without
   admission control). Latency of the answered requests and of the refusals, and the
   first request after the load. A refused client waits 50-150 ms before it tries again.

4. **Slow clients**, side by side with functions-framework's own server (:mod:`slow_clients`):
   normal clients' latency while 0, 8 and 64 connections send half a request.

Writes bench/results/load.md and load.png, and slow_clients.md, .json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import coldstart  # noqa: E402

DIGITS = ROOT / "functions" / "digits"
CONNECTIONS = 64
IMAGE = [[0, 2, 13, 16, 10, 0, 0, 0]] * 8
OIP = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [1.0] * 64}]}

#: (method, path, body) of the request mix; the comment says what each should get.
MIX = [
    ("POST", "/v2/models/digits/infer", json.dumps(OIP)),  # 200
    ("POST", "/v1/models/digits:predict", json.dumps({"instances": [[1.0] * 64]})),  # 200
    ("POST", "/predict", json.dumps({"image": IMAGE})),  # 200, through the hooks
    ("GET", "/v2/models/digits", ""),  # 200
    ("POST", "/v2/models/digits/infer", '{"inputs": [{"name": "pixels"'),  # 400: not JSON
    ("POST", "/v2/models/digits/infer", json.dumps({**OIP, "inputs": [{**OIP["inputs"][0], "shape": [1, 63]}]})),
    ("POST", "/predict", "[" * 64 + "]" * 64),  # 400: nesting
    ("POST", "/predict", json.dumps({"image": "x" * 100_000})),  # 413: string
    ("POST", "/v2/models/digits/infer", json.dumps({"inputs": [{**OIP["inputs"][0], "shape": [10**6, 64]}]})),
    ("POST", "/v2/models/nope/infer", json.dumps(OIP)),  # 404
]

MIX_SCRIPT = """
local requests = %s
local counter = 0
local threads = {}
-- One global per status: thread:get() copies numbers between Lua states, not tables.
local tracked = {200, 400, 404, 413, 500, 503, 504}
function setup(thread) table.insert(threads, thread) end
function init(args) for _, s in ipairs(tracked) do _G["s" .. s] = 0 end; other = 0 end
function request()
  counter = counter + 1
  local r = requests[(counter %% #requests) + 1]
  return wrk.format(r[1], r[2], {["Content-Type"] = "application/json"}, r[3])
end
function response(status, headers, body)
  local name = "s" .. status
  if _G[name] ~= nil then _G[name] = _G[name] + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  for _, s in ipairs(tracked) do
    local total = 0
    for _, thread in ipairs(threads) do total = total + thread:get("s" .. s) end
    io.write(string.format("STATUS %%d %%d\\n", s, total))
  end
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("other") end
  io.write(string.format("STATUS 0 %%d\\n", total))
end
"""

SLOW_HOOK = """

import time as _time

_digits_preprocess = preprocess


def preprocess(payload):
    _time.sleep(float(payload.pop("sleep_s", 0)))
    return _digits_preprocess(payload)
"""


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def write_scripts(scratch: Path) -> tuple[Path, Path]:
    oip = scratch / "oip.lua"
    body = lua_string(json.dumps(OIP))
    oip.write_text(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {body}\n')
    table = "{" + ", ".join(f'{{"{m}", "{p}", {lua_string(b)}}}' for m, p, b in MIX) + "}"
    mix = scratch / "mix.lua"
    mix.write_text(MIX_SCRIPT % table)
    return oip, mix


def worker_rss_mb(master: int) -> float:
    """RSS of the server's worker process (the one that serves), from /proc."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    pid = int(children[0]) if children else master
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def wrk(url: str, seconds: int, script: Path) -> str:
    return subprocess.run(
        ["wrk", "-t", "2", "-c", str(CONNECTIONS), "-d", f"{seconds}s", "--latency", "--timeout", "30s",
         "-s", str(script), url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip


def parse(out: str) -> dict:
    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "non_2xx": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0,
        "socket_errors": sum(map(int, socket.groups())) if socket else 0,
        "statuses": {int(s): int(c) for s, c in re.findall(r"^STATUS (\d+) (\d+)$", out, re.MULTILINE) if int(c)},
    }


def serve(folder: Path, port: int, env: dict[str, str]):
    command = [sys.executable, "-m", "modelfn.adapters.server", "--source", str(folder / "main.py"),
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    return coldstart.server(command, {"THREADS": str(CONNECTIONS), **env})


def sustained(args: argparse.Namespace, scratch: Path) -> dict:
    oip, mix = write_scripts(scratch)
    port = coldstart.free_port()
    base = f"http://127.0.0.1:{port}"
    with serve(DIGITS, port, {}) as process:
        coldstart.wait_ready(base)
        warm = parse(wrk(base + "/v2/models/digits/infer", 10, oip))
        after_warmup = worker_rss_mb(process.pid)
        load = parse(wrk(base + "/v2/models/digits/infer", args.seconds, oip))
        after_load = worker_rss_mb(process.pid)
        # Twice: bounded memory levels off after the first half instead of growing with the second.
        half = parse(wrk(base + "/", args.mix_seconds // 2, mix))
        after_half = worker_rss_mb(process.pid)
        mixed = parse(wrk(base + "/", args.mix_seconds - args.mix_seconds // 2, mix))
        after_mix = worker_rss_mb(process.pid)
        mixed = {key: half[key] + mixed[key] for key in ("requests", "non_2xx", "socket_errors")} | {
            "rps": (half["rps"] + mixed["rps"]) / 2, "p50": max(half["p50"], mixed["p50"]),
            "p99": max(half["p99"], mixed["p99"]),
            "statuses": {s: half["statuses"].get(s, 0) + mixed["statuses"].get(s, 0)
                         for s in half["statuses"] | mixed["statuses"]},
        }  # fmt: skip
        alive = urllib.request.urlopen(base + "/v2/health/live", timeout=5).status == 200
    return {"warmup": warm, "load": load, "mix": mixed, "rss_mb": {"after_warmup": after_warmup,
            "after_load": after_load, "after_half_mix": after_half, "after_mix": after_mix},
            "alive_after": alive}  # fmt: skip


def overload(seconds: int, queue: int, scratch: Path) -> dict:
    folder = scratch / f"slow-{queue}"
    shutil.copytree(DIGITS, folder, ignore=shutil.ignore_patterns("__pycache__", "train.py"))
    with open(folder / "hooks.py", "a") as hooks:
        hooks.write(SLOW_HOOK)
    port = coldstart.free_port()
    base = f"http://127.0.0.1:{port}"
    body = json.dumps({"image": IMAGE, "sleep_s": 0.05}).encode()
    env = {"MODELFN_MAX_CONCURRENCY": "2", "MODELFN_MAX_QUEUE": str(queue)}
    results: list[tuple[int, float]] = []
    ends: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        while time.monotonic() < stop:
            request = urllib.request.Request(base + "/predict", body, {"Content-Type": "application/json"})
            began = time.perf_counter()
            try:
                status = urllib.request.urlopen(request, timeout=60).status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = 0
            with lock:
                results.append((status, (time.perf_counter() - began) * 1000))
                if status == 200:
                    ends.append(time.monotonic())
            if status == 503:  # a client that honours the refusal backs off a little (or tries elsewhere)
                time.sleep(random.uniform(0.05, 0.15))

    with serve(folder, port, env):
        coldstart.wait_ready(base)
        start = time.monotonic()
        stop = start + seconds
        threads = [threading.Thread(target=client) for _ in range(CONNECTIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        began = time.perf_counter()
        after = urllib.request.urlopen(
            urllib.request.Request(base + "/predict", body, {"Content-Type": "application/json"}), timeout=60
        ).status
        recovery_ms = (time.perf_counter() - began) * 1000

    def stats(status: int) -> dict:
        times = sorted(ms for s, ms in results if s == status)
        if not times:
            return {"count": 0}
        return {"count": len(times), "p50": statistics.median(times), "p99": times[int(0.99 * (len(times) - 1))],
                "max": times[-1]}  # fmt: skip

    other = sorted({s for s, _ in results} - {200, 503})
    answered_per_s = len(ends) / (max(ends) - start) if ends else 0.0
    return {"queue": queue, "seconds": seconds, "ok": stats(200), "refused": stats(503),
            "answered_per_s": answered_per_s,
            "other": {s: sum(1 for r, _ in results if r == s) for s in other},
            "after_status": after, "after_ms": recovery_ms}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--mix-seconds", type=int, default=30)
    parser.add_argument("--overload-seconds", type=int, default=15)
    parser.add_argument("--slow-seconds", type=float, default=10.0)
    parser.add_argument("--slow-clients-only", action="store_true")
    args = parser.parse_args()
    import slow_clients

    if args.slow_clients_only:
        slow_clients.main(args.slow_seconds)
        return
    if shutil.which("wrk") is None:
        sys.exit("bench/load.py needs wrk: apt-get install wrk")
    with tempfile.TemporaryDirectory() as scratch:
        load = sustained(args, Path(scratch))
        print(json.dumps(load, indent=1))
        bounded = overload(args.overload_seconds, 4, Path(scratch))
        print(json.dumps(bounded, indent=1))
        unbounded = overload(args.overload_seconds, CONNECTIONS, Path(scratch))
        print(json.dumps(unbounded, indent=1))
    write(load, bounded, unbounded, args)
    slow_clients.main(args.slow_seconds)


def write(load: dict, bounded: dict, unbounded: dict, args: argparse.Namespace) -> None:
    results = HERE / "results"
    rss = load["rss_mb"]
    growth = (rss["after_load"] - rss["after_warmup"]) / rss["after_warmup"] * 100
    mix_growth = (rss["after_mix"] - rss["after_warmup"]) / rss["after_warmup"] * 100
    statuses = ", ".join(f"{s}: {c:,}" for s, c in sorted(load["mix"]["statuses"].items()))
    lines = [
        "# Load, memory and overload",
        "",
        f"`python bench/load.py` on {os.cpu_count()} CPUs (wrk and the server on the same machine); "
        f"{CONNECTIONS} connections; the digits function under `python -m modelfn.adapters.server`, "
        f"{CONNECTIONS} threads.",
        "",
        "## Sustained load and memory",
        "",
        "| Phase | Requests | Requests/s | p50 ms | p99 ms | Failed (non-2xx + socket) | Worker RSS after |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| warm-up, 10 s | {load['warmup']['requests']:,} | {load['warmup']['rps']:,.0f} | "
        f"{load['warmup']['p50']:.2f} | {load['warmup']['p99']:.2f} | "
        f"{load['warmup']['non_2xx'] + load['warmup']['socket_errors']} | {rss['after_warmup']:.1f} MB |",
        f"| OIP load, {args.seconds} s | {load['load']['requests']:,} | {load['load']['rps']:,.0f} | "
        f"{load['load']['p50']:.2f} | {load['load']['p99']:.2f} | "
        f"{load['load']['non_2xx'] + load['load']['socket_errors']} | {rss['after_load']:.1f} MB "
        f"({growth:+.1f}%) |",
        f"| request mix, {args.mix_seconds} s | {load['mix']['requests']:,} | {load['mix']['rps']:,.0f} | "
        f"{load['mix']['p50']:.2f} | {load['mix']['p99']:.2f} | socket: {load['mix']['socket_errors']} | "
        f"{rss['after_mix']:.1f} MB ({mix_growth:+.1f}%; {rss['after_half_mix']:.1f} MB at half-time) |",
        "",
        f"The mix ({len(MIX)} requests in turn: 4 valid ones over every protocol, then bad JSON, a wrong "
        "shape, nesting 64 deep, a 100 KB string, a 64-million-element shape, an unknown model) "
        f"was answered: {statuses}. Live after all of it: {load['alive_after']}.",
        "",
        "## Overload, side by side",
        "",
        f"A model that takes 50 ms, 2 call slots (40 requests/s at most), {CONNECTIONS} clients for "
        f"{args.overload_seconds} s each.",
        "",
        "| Queue | Answered | Answered/s | p50 ms | p99 ms | Refused 503 | Refusal p50 ms | Refusal p99 ms | "
        "Other | First request after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for run, label in ((bounded, "bounded (4)"), (unbounded, f"as long as the clients ({CONNECTIONS})")):
        ok, refused = run["ok"], run["refused"]
        lines.append(
            f"| {label} | {ok['count']:,} | {run['answered_per_s']:.1f} | {ok.get('p50', 0):,.0f} | "
            f"{ok.get('p99', 0):,.0f} | "
            f"{refused['count']:,} | {refused.get('p50', 0):.1f} | {refused.get('p99', 0):.1f} | "
            f"{run['other'] or 'none'} | {run['after_status']} in {run['after_ms']:.0f} ms |"
        )
    ratio = unbounded["ok"]["p99"] / bounded["ok"]["p99"]
    throughput = bounded["answered_per_s"] / unbounded["answered_per_s"]
    lines += [
        "",
        f"With the bounded queue an answered request waited {ratio:.1f}x less at p99 than with every "
        f"request queued, at {throughput:.2f}x the answered requests per second (until the last answer); "
        "the others were refused "
        f"in {bounded['refused'].get('p50', 0):.1f} ms (p50) with `Retry-After`, for a client or load "
        "balancer to send elsewhere, instead of waiting seconds in line.",
        "",
        "![load](load.png)",
        "",
    ]
    (results / "load.md").write_text("\n".join(lines))
    (results / "load.json").write_text(json.dumps({"load": load, "bounded": bounded, "unbounded": unbounded},
                                                  indent=1) + "\n")  # fmt: skip
    plot(bounded, unbounded, results / "load.png")


def plot(bounded: dict, unbounded: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.2))
    labels = ["answered p50", "answered p99", "refused p50", "refused p99"]
    positions = range(len(labels))
    for offset, (run, name) in enumerate(((bounded, "bounded queue (4)"), (unbounded, "queue of 64"))):
        values = [run["ok"].get("p50", 0), run["ok"].get("p99", 0), run["refused"].get("p50", 0),
                  run["refused"].get("p99", 0)]  # fmt: skip
        axis.bar([p + offset * 0.4 for p in positions], values, width=0.4, label=name)
    axis.set_xticks([p + 0.2 for p in positions], labels)
    axis.set_ylabel("ms")
    axis.set_title("Overload: 64 clients, 40 requests/s of capacity")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
