"""The cold-start budget: ``modelfn build`` starts the bundle it built and times its first answer.

``deploy.cold_start_budget_ms`` in a contract makes the build measure, on the build machine,
spawn to the first answered example request, and fail when that is over the budget, with the
phases that explain it: the interpreter and imports, then the load's own phases as the function
logs them (fetch, verification, deserialize, hooks, warm-up).

- A Lambda zip runs as Lambda runs it: a bare interpreter (``-I -S``) in the unpacked bundle,
  importing ``lambda_function`` (the init) and calling the handler once, with the bundle's own
  packages. So it needs an interpreter of the bundle's Python version.
- The other targets run functions-framework (or, for Cloud Run, modelfn's server) on the bundle's
  sources with the build machine's packages, the same pinned versions the tests ran.

A build machine is usually faster than a 1-vCPU instance: the budget is a regression gate for the
bundle (an import that crept in, a model that grew), not a forecast of the platform's figure.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

from modelfn.contract import Contract

_LOADED = re.compile(r"loaded (?:model|pipeline) \S+ v\S+ in [\d.]+ ms \((?P<phases>.*)\)\s*$", re.M)
_PHASE = re.compile(r"(?P<name>[a-z]+(?:\([^)]*\))?) (?P<ms>[\d.]+)")


#: Warm streamed completions timed for the time-to-first-token budget; the median is judged.
TTFT_SAMPLES = 5


class Measurement(NamedTuple):
    total_ms: float
    #: Phase -> milliseconds, in order: the interpreter's start and the imports, then the load's phases.
    phases: dict[str, float]
    #: A generative model's warm time to first token (median of :data:`TTFT_SAMPLES` streams), if asked for.
    ttft_ms: float | None = None


def example_request(contract: Contract) -> tuple[str, bytes]:
    """The route and body of the contract's example (``POST /predict``), or zeros on the OIP route."""
    if contract.example is not None:
        return "/predict", json.dumps(contract.example).encode()
    from modelfn.runtime.model import zero_inputs  # the warm-up's own zeros

    inputs = [
        {"name": name, "shape": list(array.shape), "datatype": spec.datatype, "data": array.ravel().tolist()}
        for spec, (name, array) in zip(contract.inputs, zero_inputs(contract).items(), strict=True)
    ]
    return f"/v2/models/{contract.name}/infer", json.dumps({"inputs": inputs}).encode()


def measure(
    stage: Path, target: str, contract: Contract, python: str, *, timeout_s: float = 300, ttft: bool = False
) -> Measurement:
    """Spawn the bundle in ``stage`` and time its first answer to the example request (and, with ``ttft``,
    a generative model's time to first token once warm: HTTP targets only, Lambda does not stream)."""
    path, body = example_request(contract)
    env = {**os.environ, "MODELFN_LOG_LEVEL": "INFO", "MODELFN_LOG_FORMAT": "text", "MODELFN_REQUEST_LOG": "0"}
    if target == "lambda":
        return _lambda(stage, path, body, python, env, timeout_s)
    return _http(stage, target, path, body, env, timeout_s, contract.name if ttft else None)


def _lambda(stage: Path, path: str, body: bytes, python: str, env: dict[str, str], timeout_s: float) -> Measurement:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running != python:
        raise RuntimeError(
            f"the Lambda zip is built for Python {python} and this is {running}: measuring its cold start "
            f"needs the bundle's own interpreter (build on {python}, or pass --python {running})"
        )
    event = {
        "version": "2.0", "rawPath": path, "requestContext": {"http": {"method": "POST"}, "stage": "$default"},
        "headers": {"content-type": "application/json"}, "body": body.decode(), "isBase64Encoded": False,
    }  # fmt: skip
    script = (
        "import time; started = time.perf_counter()\n"
        f"import sys; sys.path.insert(0, {str(stage)!r})\n"
        "import json, lambda_function\n"
        "imported = time.perf_counter()\n"
        f"result = lambda_function.handler({event!r}, None)\n"
        "done = time.perf_counter()\n"
        "print(json.dumps([result['statusCode'], (imported - started) * 1000, (done - started) * 1000]))\n"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], cwd=stage, env=env, capture_output=True,
                          text=True, timeout=timeout_s)  # fmt: skip
    total = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"the bundle failed to start:\n{done.stderr[-2000:]}")
    status, imports_ms, inside_ms = json.loads(done.stdout.strip().splitlines()[-1])
    if status != 200:
        raise RuntimeError(f"the bundle answered its example with {status}")
    phases = _load_phases(done.stderr)
    request = max(inside_ms - imports_ms - sum(phases.values()), 0.0)
    return Measurement(
        total, {"interpreter": max(total - inside_ms, 0.0), "imports (init)": imports_ms, **phases, "request": request}
    )


def _http(
    stage: Path, target: str, path: str, body: bytes, env: dict[str, str], timeout_s: float, streamed: str | None
) -> Measurement:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    if target == "cloudrun":
        command = [sys.executable, "-m", "modelfn.adapters.server", "--target", "handle", "--source", "main.py"]
    else:
        command = [sys.executable, "-m", "functions_framework", "--target", "handle", "--source", "main.py"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    log = stage.parent / f".{stage.name}.budget.log"
    started = time.perf_counter()
    with log.open("w") as sink:
        process = subprocess.Popen(command, cwd=stage, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
        try:
            total = _first_answer(f"http://127.0.0.1:{port}{path}", body, process, started, timeout_s)
            ttft = None if streamed is None else time_to_first_token(f"http://127.0.0.1:{port}", streamed, timeout_s)
        finally:
            os.killpg(process.pid, 9)
            process.wait()
    output = log.read_text(errors="replace")
    log.unlink(missing_ok=True)
    phases = _load_phases(output)
    start = {"start, imports and the request": max(total - sum(phases.values()), 0.0), **phases}
    return Measurement(total, start, ttft)


def time_to_first_token(base: str, model: str, timeout_s: float) -> float:
    """The median milliseconds from sending a streamed completion to reading its first token's event."""
    import statistics

    body = json.dumps({"model": model, "prompt": "Hello", "max_tokens": 1, "stream": True}).encode()
    samples = []
    for _ in range(TTFT_SAMPLES):
        request = urllib.request.Request(f"{base}/openai/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.readline()  # the first event's line: the first token
                samples.append((time.perf_counter() - started) * 1000)
                response.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(
                f"the bundle answered a streamed completion with {exc.code}: {exc.read()[:300]!r}"
            ) from None
    return statistics.median(samples)


def _first_answer(url: str, body: bytes, process: subprocess.Popen, started: float, timeout_s: float) -> float:
    while True:
        try:
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.read()
                return (time.perf_counter() - started) * 1000
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"the bundle answered its example with {exc.code}: {exc.read()[:300]!r}") from None
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None:
                raise RuntimeError(f"the bundle exited with {process.returncode} before answering") from None
            if time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"the bundle did not answer within {timeout_s:.0f} s") from None
            time.sleep(0.005)


def _load_phases(output: str) -> dict[str, float]:
    """The phases of the last ``loaded model ... (...)`` line the function logged, in milliseconds."""
    found = list(_LOADED.finditer(output))
    if not found:
        return {}
    return {m["name"]: float(m["ms"]) for m in _PHASE.finditer(found[-1]["phases"])}


def verdict(measurement: Measurement, budget_ms: int | None) -> str | None:
    """The failure message when ``measurement`` is over ``budget_ms``; ``None`` when within it."""
    if budget_ms is None or measurement.total_ms <= budget_ms:
        return None
    worst = max(measurement.phases.items(), key=lambda item: item[1], default=("", 0.0))
    return (
        f"cold start {measurement.total_ms:,.0f} ms is over deploy.cold_start_budget_ms ({budget_ms:,} ms); "
        f"the largest phase is {worst[0]} ({worst[1]:,.0f} ms): " + describe(measurement)
    )


def ttft_verdict(measurement: Measurement, budget_ms: int | None) -> str | None:
    """The failure message when the time to first token is over ``budget_ms``; ``None`` when within it."""
    if budget_ms is None or measurement.ttft_ms is None or measurement.ttft_ms <= budget_ms:
        return None
    return (
        f"time to first token {measurement.ttft_ms:,.1f} ms (median of {TTFT_SAMPLES} warm streams) is over "
        f"deploy.ttft_budget_ms ({budget_ms:,} ms)"
    )


def describe(measurement: Measurement) -> str:
    return ", ".join(f"{name} {ms:,.1f} ms" for name, ms in measurement.phases.items())
