"""Where one digits request's time goes: a ladder of functions-framework handlers, each one step more.

    python bench/ladder.py [--rounds 5] [--seconds 5]     (needs wrk: apt-get install wrk)

Every step runs under the same functions-framework and interpreter as modelfn and gets the same
OIP JSON request at concurrency 1 (wrk); the steps are interleaved round by round, the order
rotated. Each step's cost is its time per request minus that of the step it adds to. The last rungs are
modelfn itself and, for reference, one ONNX Runtime call timed in a hot loop in this process.
Writes bench/results/ladder.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import batching  # noqa: E402  (its wrk runner)
import coldstart  # noqa: E402
import compare  # noqa: E402  (its wrk script writer)

LADDER = HERE / "floors" / "ladder"
MODEL = coldstart.DIGITS / "model.onnx"
PATH = "/v2/models/digits/infer"
STEPS = {  # label -> (source, extra environment, the step it adds to), cheapest first
    "answer a constant (HTTP floor)": (HERE / "floors/constant_main.py", {}, None),
    "+ read the body": (LADDER / "read_body.py", {}, "answer a constant (HTTP floor)"),
    "+ parse OIP JSON into numpy": (LADDER / "parse_json.py", {}, "+ read the body"),
    "+ one ONNX Runtime call (threads = CPUs)": (
        LADDER / "onnx_run.py",
        {"BENCH_ORT_THREADS": "0"},
        "+ parse OIP JSON into numpy",
    ),
    "+ one ONNX Runtime call (1 thread)": (
        LADDER / "onnx_run.py",
        {"BENCH_ORT_THREADS": "1"},
        "+ parse OIP JSON into numpy",
    ),
    "modelfn (OIP, contract checks, hooks)": (
        coldstart.DIGITS / "main.py",
        {},
        "+ one ONNX Runtime call (threads = CPUs)",
    ),
}


def requests_per_second(
    source: Path, env: dict[str, str], request: compare.Request, script: Path, seconds: int
) -> float:
    port = coldstart.free_port()
    command = [*coldstart.FF, "--source", str(source), "--port", str(port)]
    with coldstart.server(command, {"BENCH_MODEL": str(MODEL), **env}) as process:
        compare.first_answer(process, port, request)  # it also loads modelfn's model: wrk then measures warm
        return batching.wrk(f"http://127.0.0.1:{port}{PATH}", 1, seconds, script)["rps"]


def hot_loop_call_us(body: bytes) -> float:
    """One ONNX Runtime call on the same input, in a hot loop in this process (median of 5 x 2000)."""
    import numpy as np
    import onnxruntime as ort
    import orjson

    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    tensor = orjson.loads(body)["inputs"][0]
    feed = {"pixels": np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])}
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(2000):
            session.run(None, feed)
        samples.append((time.perf_counter() - started) / 2000 * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description="Per-request cost ladder (digits, concurrency 1).")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    batching.require_wrk()
    body = coldstart.oip_body()
    request = compare.Request(PATH, body)
    scratch = Path(tempfile.mkdtemp(prefix="modelfn-ladder-"))
    script = compare.wrk_script(request, scratch, "digits")
    rps: dict[str, list[float]] = {label: [] for label in STEPS}
    labels = list(STEPS)
    for round_ in range(args.rounds):
        for label in coldstart.rotated(labels, round_):
            source, env, _ = STEPS[label]
            rps[label].append(requests_per_second(source, env, request, script, args.seconds))
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    write(rps, hot_loop_call_us(body), args)
    shutil.rmtree(scratch, ignore_errors=True)


def write(rps: dict[str, list[float]], hot_us: float, args: argparse.Namespace) -> None:
    floor = statistics.median(next(iter(rps.values())))
    lines = [
        f"Where a digits request's time goes: functions-framework handlers, each one step more "
        f"({args.rounds} interleaved rounds, wrk {args.seconds} s at concurrency 1, 2 CPUs; medians).",
        "",
        "| handler | req/s | µs per request | step cost | vs the HTTP floor |",
        "|---|---:|---:|---:|---:|",
    ]
    per_request = {label: 1e6 / statistics.median(samples) for label, samples in rps.items()}
    for label, samples in rps.items():
        median = statistics.median(samples)
        base = STEPS[label][2]
        step = "" if base is None else f"{per_request[label] - per_request[base]:+.0f} µs"
        lines.append(f"| {label} | {median:,.0f} | {per_request[label]:.0f} | {step} | {median / floor:.2f}x |")
    lines += ["", f"For reference, one ONNX Runtime call on the same input in a hot loop: {hot_us:.1f} µs.", ""]
    out = coldstart.RESULTS / "ladder.md"
    out.write_text("\n".join(lines))
    print(out.read_text())


if __name__ == "__main__":
    main()
