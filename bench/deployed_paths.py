"""Cold start of the digits function on each deployed path, against a hand-written function on the same path.

    python bench/deployed_paths.py [--runs 7]

- **Cloud Functions gen2**: the functions-framework command (gunicorn), as bench/coldstart.py.
- **Cloud Run image**: ``python -m modelfn.adapters.server`` (what the image's CMD runs), for both
  modelfn's ``main.py`` and the hand-written one.
- **Lambda zip**: the zip ``modelfn build --target lambda`` writes, unpacked, run two ways:
  - *under Lambda's runtime*: the official Runtime Interface Emulator (``aws-lambda-rie``) starting
    ``awslambdaric``, the runtime client of Lambda's Python images, on the handler, with nothing on
    the path but the zip and the runtime's own packages (``make tools`` fetches both), and one
    invocation posted to it. This is what a cold start costs on Lambda: the runtime client's own
    imports (``logging``, ``json``, ``decimal``...) are paid before the handler's, by every function.
  - *the handler alone*: a bare interpreter (``-I -S``) importing the handler module (the init) and
    invoking it once: the least a Lambda cold start can cost, and every import charged to the handler.

  The hand-written handler sits in the same unpacked folder (same numpy, same ONNX Runtime), creating
  its session at import.

Spawn to the first answered prediction, systems interleaved in a new random order each run, with bytecode
present as in a deployed bundle. Writes bench/results/deployed_paths.{md,png}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

from charts import publish  # noqa: E402
from coldstart import FF, free_port, oip_body, time_server  # noqa: E402

ROOT = HERE.parent
DIGITS = ROOT / "functions" / "digits"
HAND_MAIN = HERE / "floors" / "handwritten_main.py"
#: Idle before each start: a start right after a server's teardown measured tens of ms slower.
SETTLE_S = 1.0
HAND_BODY = b'{"pixels": [[' + b",".join([b"0.0"] * 64) + b"]]}"
HAND_LAMBDA = '''"""The hand-written Lambda handler: the session created at import (the init), JSON in and out."""

import json
import os

import numpy as np
import onnxruntime as ort

MODEL = os.path.join(os.path.dirname(__file__), "model.onnx")
session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
OUTPUTS = [output.name for output in session.get_outputs()]


def handler(event, context):
    values = np.asarray(json.loads(event["body"])["pixels"], dtype=np.float32)
    results = session.run(OUTPUTS, {"pixels": values})
    return {"statusCode": 200, "body": json.dumps({n: r.tolist() for n, r in zip(OUTPUTS, results, strict=True)})}
'''


def lambda_bundle() -> Path:
    """digits' Lambda zip for this interpreter, unpacked, with the hand-written handler beside it."""
    from modelfn.tooling.build import build

    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    out = HERE / ".cache" / "deployed"
    report = build(DIGITS, "lambda", out, python=python)
    task = out / "task"
    shutil.rmtree(task, ignore_errors=True)
    with zipfile.ZipFile(report.output) as bundle:
        bundle.extractall(task)
    (task / "hand_function.py").write_text(HAND_LAMBDA)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
                    str(task / "hand_function.py")], check=True)  # fmt: skip
    return task


def time_lambda(task: Path, module: str, body: dict) -> float:
    event = lambda_event(body)
    script = f"import sys; sys.path.insert(0, {str(task)!r})\nimport {module}\nr = {module}.handler({event!r}, None)\n"
    script += "assert r['statusCode'] == 200, r\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["MODELFN_LOG_LEVEL"] = "WARNING"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-I", "-S", "-c", script], cwd=task, env=env, check=True)
    return time.perf_counter() - started


def time_lambda_runtime(task: Path, module: str, body: dict) -> float:
    """Spawn of the emulator and the runtime client to the answer of the first invocation."""
    rie = ROOT / ".tools" / "lambda" / "aws-lambda-rie"
    if not rie.is_file():
        raise SystemExit("the Lambda emulator is missing: `make tools` fetches it into .tools/lambda")
    port = free_port()
    env = {"PATH": os.environ["PATH"], "LAMBDA_TASK_ROOT": str(task), "MODELFN_LOG_LEVEL": "WARNING",
           "PYTHONPATH": f"{task}:{rie.parent / 'runtime'}", "AWS_LAMBDA_FUNCTION_NAME": "digits",
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024", "AWS_LAMBDA_FUNCTION_TIMEOUT": "30"}  # fmt: skip
    command = [str(rie), "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
               "--runtime-api-address", f"127.0.0.1:{free_port()}",
               sys.executable, "-S", "-m", "awslambdaric", f"{module}.handler"]  # fmt: skip
    event = json.dumps(lambda_event(body)).encode()
    url = f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=task, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:  # the emulator listens within milliseconds; the runtime starts on the first invocation
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if process.poll() is not None or time.perf_counter() - started > 30:
                raise SystemExit("the Lambda emulator did not start")
            time.sleep(0.002)
        with urllib.request.urlopen(urllib.request.Request(url, data=event), timeout=60) as answer:
            result = json.loads(answer.read())
        elapsed = time.perf_counter() - started
    finally:
        process.terminate()
        process.wait()
    assert result["statusCode"] == 200, result
    return elapsed


def lambda_event(body: dict) -> dict:
    return {
        "version": "2.0", "rawPath": "/predict", "requestContext": {"http": {"method": "POST"}},
        "headers": {"content-type": "application/json"}, "body": json.dumps(body), "isBase64Encoded": False,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description="Cold start on each deployed path.")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    # Bytecode, as every deployed bundle carries (images compile at build; zips from modelfn build do).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src" / "modelfn"), str(DIGITS),
                    str(HERE / "floors")], check=True)  # fmt: skip
    subprocess.run([sys.executable, "-m", "modelfn", "check", str(DIGITS)], check=True, capture_output=True)
    task = lambda_bundle()
    server = [sys.executable, "-m", "modelfn.adapters.server", "--target", "handle", "--host", "127.0.0.1"]
    systems = {
        "Cloud Functions gen2 (functions-framework): modelfn": lambda port: (
            [*FF, "--source", str(DIGITS / "main.py"), "--port", str(port)], "/v2/models/digits/infer", oip_body()),
        "Cloud Functions gen2 (functions-framework): hand-written": lambda port: (
            [*FF, "--source", str(HAND_MAIN), "--port", str(port)], "/", HAND_BODY),
        "Cloud Run image (modelfn.adapters.server): modelfn": lambda port: (
            [*server, "--source", str(DIGITS / "main.py"), "--port", str(port)], "/v2/models/digits/infer",
            oip_body()),
        "Cloud Run image (modelfn.adapters.server): hand-written": lambda port: (
            [*server, "--source", str(HAND_MAIN), "--port", str(port)], "/", HAND_BODY),
    }  # fmt: skip
    modelfn_call = ("lambda_function", {"image": [[0, 0, 5, 13, 9, 1, 0, 0]] * 8})
    hand_call = ("hand_function", {"pixels": [[0.0] * 64]})
    lambdas = {  # name: (timer, handler module and body)
        "Lambda zip under Lambda's runtime (emulator, awslambdaric): modelfn": (time_lambda_runtime, modelfn_call),
        "Lambda zip under Lambda's runtime (emulator, awslambdaric): hand-written": (time_lambda_runtime, hand_call),
        "Lambda zip, the handler alone (init + first invoke): modelfn": (time_lambda, modelfn_call),
        "Lambda zip, the handler alone (init + first invoke): hand-written": (time_lambda, hand_call),
    }
    names = [*systems, *lambdas]
    samples: dict[str, list[float]] = {name: [] for name in names}
    for run in range(args.runs):
        # A new order each run: rotating one order keeps each system behind the same neighbour.
        order = list(names)
        random.Random(run).shuffle(order)
        for name in order:
            time.sleep(SETTLE_S)
            if name in lambdas:
                timer, call = lambdas[name]
                samples[name].append(timer(task, *call))
            else:
                port = free_port()
                command, path, body = systems[name](port)
                samples[name].append(time_server(command, path, body, port))
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    lines = [
        f"Cold start of digits by deployed path, spawn to first answered prediction ({args.runs} interleaved runs, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}).",
        "",
        "| path | system | median | min | max | vs hand-written |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in names:
        path, system = name.split(": ")
        hand = statistics.median(samples[f"{path}: hand-written"])
        values = samples[name]
        median = statistics.median(values)
        lines.append(f"| {path} | {system} | {median * 1000:.0f} ms | {min(values) * 1000:.0f} ms | "
                     f"{max(values) * 1000:.0f} ms | {median / hand:.2f}x |")  # fmt: skip
    publish("deployed_paths", "\n".join(lines) + "\n", {k: [v * 1000 for v in vs] for k, vs in samples.items()},
            xlabel="spawn to first answer (ms, median)", title="Cold start of digits by deployed path",
            colors=("#2563eb", "#9aa5b1"))  # fmt: skip


if __name__ == "__main__":
    main()
