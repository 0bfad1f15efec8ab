"""Micro-batching side by side: throughput and latency with and without it, at concurrency 1 and 16.

    python bench/batching.py [--rounds 3] [--seconds 8]     (needs wrk: apt-get install wrk)

The digits network as Keras (functions/digits-keras: a model call costs milliseconds of
framework overhead, which batching shares out) and as ONNX (functions/digits: a call
costs microseconds, so batching calibrates itself off and must do no harm), and
MobileNetV2 (14 MB ONNX, bench/medium_model.py; its requests use the OIP binary tensor
extension), each served by functions-framework with and without ``batching`` in its
contract. Every server runs 16
request threads (``THREADS=16``; functions-framework's default is 4 per CPU), so that
concurrency 16 puts 16 requests in the process either way. wrk sends one-row OIP
requests for ``--seconds`` at concurrency 1, then 16, to each configuration in turn;
the order rotates each round. Medians of the rounds.
Writes bench/results/batching.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
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

import coldstart  # noqa: E402

MOBILENET = HERE / ".cache" / "mobilenet"
BATCHED = {"max_batch_size": 32}
CONFIGS = {
    "digits Keras, unbatched": (ROOT / "functions/digits-keras", None),
    "digits Keras, batched": (ROOT / "functions/digits-keras", BATCHED),
    "digits ONNX, unbatched": (ROOT / "functions/digits", None),
    "digits ONNX, batched": (ROOT / "functions/digits", BATCHED),
    "MobileNetV2 ONNX, unbatched": (MOBILENET, None),
    "MobileNetV2 ONNX, batched": (MOBILENET, BATCHED),
}
CONCURRENCY = (1, 16)
BODY = json.dumps({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [3.0] * 64}]})


def lua_scripts(scratch: Path) -> dict[str, tuple[str, Path]]:
    """Per model: the inference path and a wrk script that posts one request (JSON, or OIP binary)."""
    import numpy as np

    image = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32).tobytes()
    header = json.dumps({"inputs": [{"name": "image", "shape": [1, 224, 224, 3], "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(image)}}]}).encode()  # fmt: skip
    (scratch / "image.bin").write_bytes(header + image)
    digits = scratch / "digits.lua"
    digits.write_text(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {BODY!r}\n')
    mobilenet = scratch / "mobilenet.lua"
    mobilenet.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/octet-stream"\n'
        f'wrk.headers["Inference-Header-Content-Length"] = "{len(header)}"\n'
        f'local f = io.open("{scratch / "image.bin"}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
    )
    return {"digits": ("/v2/models/digits/infer", digits), "mobilenet": ("/v2/models/mobilenet/infer", mobilenet)}


def prepare(scratch: Path) -> dict[str, Path]:
    """A copy of each function folder, with ``batching`` added where the configuration has it."""
    import medium_model
    import yaml

    medium_model.build(MOBILENET)
    folders = {}
    for label, (source, batching) in CONFIGS.items():
        folder = scratch / label.replace(", ", "-").lower()
        shutil.copytree(source, folder, ignore=shutil.ignore_patterns(".modelfn", "__pycache__", "train.py"))
        if batching is not None:
            contract = yaml.safe_load((folder / "modelfn.yaml").read_text())
            contract["batching"] = batching
            (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
        subprocess.run([sys.executable, "-m", "modelfn", "check", str(folder)], check=True, capture_output=True)
        folders[label] = folder
    return folders


def require_wrk() -> None:
    """Exit with the way to install wrk when it is missing (every load benchmark needs it)."""
    if shutil.which("wrk") is None:
        sys.exit(f"bench/{Path(sys.argv[0]).name} needs wrk: apt-get install wrk")


def wrk(url: str, connections: int, seconds: int, script: Path) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{seconds}s", "--latency",
         "--timeout", "30s", "-s", str(script), url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failed requests:\n{out}")

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": latency("50"),
            "p99": latency("99")}  # fmt: skip


def measure(folder: Path, seconds: int, path: str, script: Path) -> dict[int, dict[str, float]]:
    port = coldstart.free_port()
    command = [*coldstart.FF, "--source", str(folder / "main.py"), "--port", str(port)]
    url = f"http://127.0.0.1:{port}{path}"
    with coldstart.server(command, {"TF_CPP_MIN_LOG_LEVEL": "3", "THREADS": "16"}) as process:
        deadline = time.monotonic() + 120
        while True:  # readiness loads the model; wrk then measures it warm
            try:
                if urllib.request.urlopen(url.removesuffix("/infer") + "/ready", timeout=60).status == 200:
                    break
            except OSError:  # not listening yet, or 503 while loading
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{folder} did not start") from None
                time.sleep(0.05)
        return {c: wrk(url, c, seconds, script) for c in CONCURRENCY}


def main() -> None:
    parser = argparse.ArgumentParser(description="Micro-batching side by side.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    require_wrk()
    with tempfile.TemporaryDirectory(prefix="modelfn-bench-") as scratch:
        folders = prepare(Path(scratch))
        scripts = lua_scripts(Path(scratch))
        runs: dict[str, list[dict[int, dict[str, float]]]] = {label: [] for label in CONFIGS}
        labels = list(CONFIGS)
        for round_ in range(args.rounds):
            for label in coldstart.rotated(labels, round_):
                path, script = scripts["mobilenet" if label.startswith("MobileNetV2") else "digits"]
                runs[label].append(measure(folders[label], args.seconds, path, script))
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    write(runs, args)


def write(runs: dict[str, list[dict[int, dict[str, float]]]], args: argparse.Namespace) -> None:
    def median(label: str, c: int, key: str) -> float:
        return statistics.median(run[c][key] for run in runs[label])

    lines = [
        f"Micro-batching, one-row OIP requests ({args.rounds} rotated rounds of {args.seconds} s per "
        f"point, wrk, 16 server threads, {os.cpu_count()} CPUs; medians).",
        "",
        "| configuration | req/s c1 | p50 c1 | req/s c16 | p50 c16 | p99 c16 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label in runs:
        lines.append(
            f"| {label} | {median(label, 1, 'rps'):,.0f} | {median(label, 1, 'p50'):.2f} ms "
            f"| {median(label, 16, 'rps'):,.0f} | {median(label, 16, 'p50'):.2f} ms "
            f"| {median(label, 16, 'p99'):.2f} ms |"
        )
    lines.append("")
    for model in ("digits Keras", "digits ONNX", "MobileNetV2 ONNX"):
        ratios = [median(f"{model}, batched", c, "rps") / median(f"{model}, unbatched", c, "rps") for c in CONCURRENCY]
        lines.append(f"{model}: batched / unbatched throughput {ratios[0]:.2f}x at c1, {ratios[1]:.2f}x at c16.")
    coldstart.RESULTS.mkdir(parents=True, exist_ok=True)
    (coldstart.RESULTS / "batching.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
