"""What monitoring costs functions/digits: cold start, latency at c4 and memory, off and on, in one run.

    python bench/monitoring.py [--runs 5] [--seconds 8] [--rounds 3]     (needs wrk)

Systems, each functions/digits under functions-framework as Cloud Functions gen2 runs it:

- off: no monitoring setting;
- on: payload logging of 10% of requests to a folder (``MODELFN_PAYLOAD_LOG``, ``MODELFN_PAYLOAD_SAMPLE=0.1``)
  and drift summaries (``MODELFN_MONITOR_STORE``, flushed every 10 s here instead of 60 so that the
  flushes fall inside the load).

Cold start is spawn to the first answered OIP request (systems interleaved and rotated, median of
``--runs``). Then, warm, wrk sends OIP requests at 4 connections for ``--seconds`` in ``--rounds`` rotated
rounds: requests per second, p50 and p99 (medians over rounds), and the server's PSS after the load.
Writes bench/results/monitoring.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import batching  # noqa: E402  (its wrk runner)
import coldstart  # noqa: E402
import compare  # noqa: E402  (PSS of a process group)

DIGITS = HERE.parent / "functions" / "digits"
CONNECTIONS = 4


def systems(scratch: Path) -> dict[str, dict[str, str]]:
    payloads = {"MODELFN_PAYLOAD_SAMPLE": "0.1"}
    drift = {"MODELFN_MONITOR_FLUSH_S": "10"}
    return {
        "off": {},
        "drift only": {**drift, "MODELFN_MONITOR_STORE": str(scratch / "monitor-only")},
        "payload log 10% only": {**payloads, "MODELFN_PAYLOAD_LOG": str(scratch / "payloads-only")},
        "on: payload log 10%, drift": {**payloads, **drift, "MODELFN_PAYLOAD_LOG": str(scratch / "payloads"),
                                       "MODELFN_MONITOR_STORE": str(scratch / "monitor")},
    }  # fmt: skip


def loaded(env: dict[str, str], seconds: int, script: Path) -> dict[str, float]:
    port = coldstart.free_port()
    command = [*coldstart.FF, "--source", str(DIGITS / "main.py"), "--port", str(port)]
    url = f"http://127.0.0.1:{port}/v2/models/digits/infer"
    with coldstart.server(command, {**env, "THREADS": "8"}) as process:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(url.removesuffix("/infer") + "/ready", timeout=30).status == 200:
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("digits did not start") from None
                time.sleep(0.05)
        batching.wrk(url, CONNECTIONS, 2, script)  # warm: the first flush, the writer threads
        result = batching.wrk(url, CONNECTIONS, seconds, script)
        result["pss"] = compare.pss_mb(os.getpgid(process.pid))
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    batching.require_wrk()
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        table = systems(scratch)
        names = list(table)
        body = coldstart.oip_body()
        starts: dict[str, list[float]] = {name: [] for name in names}
        for run in range(args.runs):
            for name in coldstart.rotated(names, run):
                command = [*coldstart.FF, "--source", str(DIGITS / "main.py")]
                port = coldstart.free_port()
                starts[name].append(coldstart.time_server([*command, "--port", str(port)], "/v2/models/digits/infer",
                                                          body, port, table[name]))  # fmt: skip
        (scratch / "body.json").write_bytes(body)
        script = scratch / "oip.lua"
        opened = f'local f = io.open("{scratch / "body.json"}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
        script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n' + opened)
        loads: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for round_ in range(args.rounds):
            for name in coldstart.rotated(names, round_):
                loads[name].append(loaded(table[name], args.seconds, script))
        records = sum(1 for _ in (scratch / "payloads").rglob("*.jsonl"))
        summaries = sum(1 for _ in (scratch / "monitor").rglob("*.json"))
    write(starts, loads, args, records, summaries)


def write(starts: dict, loads: dict, args: argparse.Namespace, files: int, summaries: int) -> None:
    med = statistics.median
    base = {key: med([r[key] for r in loads["off"]]) for key in ("rps", "p50", "p99", "pss")}
    lines = [
        f"functions/digits under functions-framework, OIP JSON; cold start median of {args.runs} interleaved runs; "
        f"wrk at c{CONNECTIONS}, {args.seconds} s x {args.rounds} rotated rounds (medians); {os.cpu_count()} CPUs. "
        f"The runs with monitoring on wrote {files} payload files and {summaries} drift files.",
        "",
        "| system | cold start | vs off | req/s | vs off | p50 | p99 | vs off | PSS after load | vs off |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    off_start = med(starts["off"])
    for name in starts:
        start = med(starts[name])
        row = {key: med([r[key] for r in loads[name]]) for key in ("rps", "p50", "p99", "pss")}
        lines.append(
            f"| {name} | {start * 1000:,.0f} ms | {start / off_start:.2f}x | {row['rps']:,.0f} | "
            f"{row['rps'] / base['rps']:.2f}x | {row['p50']:.2f} ms | {row['p99']:.2f} ms | "
            f"{row['p99'] / base['p99']:.2f}x | {row['pss']:.0f} MB | {row['pss'] - base['pss']:+.1f} MB |"
        )
    text = "\n".join(lines) + "\n"
    (HERE / "results" / "monitoring.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
