"""Where one digits request's time goes inside the server, phase by phase, beside the hand-written function.

    python bench/request_phases.py [--seconds 8] [--rounds 3]     (needs wrk)

Each system runs under functions-framework, as deployed, with wrk sending one request at a time. A
wrapper module (written to a scratch folder, never shipped) times each phase with the request
thread's own CPU clock (``time.thread_time``), so a noisy neighbour's share of the machine does not
count, and writes the averages when the server stops. Phases of modelfn, each inclusive of what it
calls:

- the handler: everything modelfn does for the request. modelfn answers in front of Flask
  (:mod:`modelfn.adapters.wsgi`), so this is its WSGI front, from the environ to the response; the
  hand-written function's handler is its Flask view, and Flask's own share is in neither;
- receive: reading the body (``read_body``);
- parse: the JSON of an Open Inference Protocol request;
- validate and decode: every tensor's form, size and signature checked, then its array built;
- model lookup: the loaded model from the process-global cache;
- run: admission, the deadline, the input checks and the predictor, of which ONNX Runtime's own run;
- encode: the answer's JSON;
- metrics and the log line (with ``MODELFN_LOG_LEVEL=INFO`` in the last system, to a file);
- routing and dispatch: what the handler spends outside the phases above.

The hand-written function's phases are its own three: parse (``get_json`` and ``np.asarray``), ONNX
Runtime, encode (``tolist`` and ``json.dumps``). Writes bench/results/request_phases.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import batching  # noqa: E402  (its wrk runner)
import coldstart  # noqa: E402
import compare  # noqa: E402  (its request and wrk script)

DIGITS = ROOT / "functions" / "digits"
RESULTS = HERE / "results"

# The wrapper around modelfn's digits function: patches module attributes the request path looks up
# at call time, so each phase is timed where it runs.
MODELFN_WRAPPER = """
import atexit, json, os, time
import onnxruntime
from modelfn.adapters import dispatch, gcf, wsgi
from modelfn.function import ModelFunction
from modelfn.observability.metrics import RECORDER
from modelfn.protocols import oip

clock = time.thread_time
totals, count = {}, [0]

def timed(phase, call):
    def wrapper(*args, **kwargs):
        started = clock()
        try:
            return call(*args, **kwargs)
        finally:
            totals[phase] = totals.get(phase, 0.0) + clock() - started
    return wrapper

wsgi.read_body = timed("receive", wsgi.read_body)
oip.parse_json_object = timed("parse", oip.parse_json_object)
oip.decode_inputs = timed("validate and decode", oip.decode_inputs)
ModelFunction.model = timed("model lookup", ModelFunction.model)
ModelFunction.run = timed("run", ModelFunction.run)
onnxruntime.InferenceSession.run = timed("of which ONNX Runtime", onnxruntime.InferenceSession.run)
oip._encode_response = timed("encode", oip._encode_response)
RECORDER.request = timed("metrics", RECORDER.request)
dispatch._log = timed("log line", dispatch._log)
front = wsgi.WsgiFront.__call__

def answer(self, environ, start_response):
    if environ.get("HTTP_X_BENCH_RESET"):  # after the warm-up: count from here
        totals.clear()
        count[0] = 0
    started = clock()
    try:
        return front(self, environ, start_response)
    finally:
        totals["handler"] = totals.get("handler", 0.0) + clock() - started
        count[0] += 1

wsgi.WsgiFront.__call__ = answer
handle = gcf.http_function(os.environ["BENCH_FOLDER"])

def write():
    if count[0]:  # the worker that served them (gunicorn's master imported this module too)
        with open(os.environ["BENCH_OUT"], "w") as out:
            json.dump({"count": count[0], "totals": totals}, out)

atexit.register(write)
"""

HAND_WRAPPER = """
import atexit, json, os, time
import numpy as np
import onnxruntime as ort

session = ort.InferenceSession(os.environ["BENCH_MODEL"], providers=["CPUExecutionProvider"])
OUTPUTS = [output.name for output in session.get_outputs()]
clock = time.thread_time
totals, count = {"parse": 0.0, "of which ONNX Runtime": 0.0, "encode": 0.0, "handler": 0.0}, [0]

def handle(request):
    if request.headers.get("X-Bench-Reset"):  # after the warm-up: count from here
        for phase in totals:
            totals[phase] = 0.0
        count[0] = 0
    started = clock()
    values = np.asarray(request.get_json()["pixels"], dtype=np.float32)
    parsed = clock()
    results = session.run(OUTPUTS, {"pixels": values})
    ran = clock()
    body = json.dumps({name: result.tolist() for name, result in zip(OUTPUTS, results, strict=True)})
    done = clock()
    for phase, seconds in (("parse", parsed - started), ("of which ONNX Runtime", ran - parsed),
                           ("encode", done - ran), ("handler", done - started)):
        totals[phase] += seconds
    count[0] += 1
    return body

def write():
    if count[0]:  # the worker that served them (gunicorn's master imported this module too)
        with open(os.environ["BENCH_OUT"], "w") as out:
            json.dump({"count": count[0], "totals": totals}, out)

atexit.register(write)
"""

ORDER = ["handler", "receive", "parse", "validate and decode", "model lookup", "run", "of which ONNX Runtime",
         "encode", "metrics", "log line", "routing and dispatch"]  # fmt: skip


def measure(system: str, seconds: int, scratch: Path) -> dict[str, float]:
    """CPU microseconds per request by phase, for one server run of ``seconds`` under wrk at c1."""
    import numpy as np

    x = np.random.default_rng(0).random((1, 64), dtype=np.float32) * 16
    source = scratch / f"{system.split()[0]}_main.py"
    source.write_text(HAND_WRAPPER if system == "hand-written" else MODELFN_WRAPPER)
    out = scratch / "phases.json"
    out.unlink(missing_ok=True)
    env = {"BENCH_FOLDER": str(DIGITS), "BENCH_MODEL": str(DIGITS / "model.onnx"), "BENCH_OUT": str(out),
           "MODELFN_LOG_LEVEL": "INFO" if "log" in system else "WARNING"}  # fmt: skip
    if system == "hand-written":
        path, body = "/", json.dumps({"pixels": x.tolist()})
    else:
        path = "/v2/models/digits/infer"
        body = json.dumps({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32",
                                       "data": x.ravel().tolist()}]})  # fmt: skip
    request = compare.Request(path, body.encode())
    script = compare.wrk_script(request, scratch, "request")
    port = coldstart.free_port()
    command = [*coldstart.FF, "--source", str(source), "--port", str(port)]
    # Gracefully stopped (SIGTERM), so that the wrapper's atexit writes its figures.
    process = subprocess.Popen(command, env={**os.environ, **env}, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}{path}"
        deadline = time.monotonic() + 60
        while True:
            try:
                batching.wrk(url, 1, 1, script)  # also the warm-up, not counted below
                break
            except Exception:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{system} did not start") from None
                time.sleep(0.2)
        reset = urllib.request.Request(url, data=request.body, headers={"Content-Type": "application/json",
                                                                          "X-Bench-Reset": "1"})  # fmt: skip
        urllib.request.urlopen(reset, timeout=30).close()
        rate = batching.wrk(url, 1, seconds, script)["rps"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    found = json.loads(out.read_text())
    per = {phase: total / found["count"] * 1e6 for phase, total in found["totals"].items()}
    if system != "hand-written":
        inside = ["receive", "parse", "validate and decode", "model lookup", "run", "encode", "metrics", "log line"]
        per["routing and dispatch"] = per["handler"] - sum(per.get(phase, 0.0) for phase in inside)
    per["req/s"] = rate
    return per


def main() -> None:
    parser = argparse.ArgumentParser(description="Where one digits request's time goes, phase by phase.")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    batching.require_wrk()
    systems = ["modelfn", "hand-written", "modelfn, request log on"]
    samples: dict[str, list[dict[str, float]]] = {system: [] for system in systems}
    with tempfile.TemporaryDirectory(prefix="modelfn-phases-") as scratch:
        for round_ in range(args.rounds):
            for system in coldstart.rotated(systems, round_):
                samples[system].append(measure(system, args.seconds, Path(scratch)))
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    medians = {s: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for s, rows in samples.items()}
    lines = [
        f"Thread CPU per digits request inside the server, by phase (microseconds; wrk at c1, {args.seconds} s "
        f"x {args.rounds} rotated rounds, medians; {os.cpu_count()} CPUs). The warm-up is not counted.",
        "",
        "| phase | " + " | ".join(systems) + " |",
        "|---|" + "---:|" * len(systems),
    ]
    for phase in [*ORDER, "req/s"]:
        cells = []
        for system in systems:
            value = medians[system].get(phase)
            cells.append("" if value is None else f"{value:,.0f}" if phase == "req/s" else f"{value:,.1f}")
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "request_phases.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
