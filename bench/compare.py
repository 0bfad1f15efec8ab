"""modelfn beside the alternatives, each in its own virtual environment, measured in one run.

    python bench/compare.py [--runs 5] [--seconds 8]     (needs wrk: apt-get install wrk)

Systems, on the digits model and on MobileNetV2 (14 MB, random weights; bench/medium_model.py):

- modelfn: functions/digits (and the MobileNetV2 function) under functions-framework, as deployed;
  MobileNetV2 also with the OIP binary tensor extension;
- hand-written: the usual functions-framework function, ONNX Runtime session created at import;
- MLServer 1.7: a custom ONNX Runtime model (bench/alternatives/mlserver), OIP JSON;
- Flask + Keras: the classic app, Keras model loaded at import, ``model.predict`` per request,
  under gunicorn (bench/alternatives/flask_keras);
- on digits, the HTTP floor: functions-framework answering a constant, no model.

Each system gets its own virtual environment under bench/.venvs (created once, pinned below).
Cold start is spawn to first answered prediction (median of ``--runs``, systems interleaved and
rotated); PSS is summed over the server's whole process group after its first prediction; wrk then
measures requests per second and p50/p99 at concurrency 1 and 16 (digits) or 1 and 8 (MobileNetV2)
for ``--seconds`` each, in ``--load-rounds`` rounds with the systems rotated (medians: these shared
machines drift by 10% from one minute to the next). Writes bench/results/compare.md and compare.png.

Then the protocols, on the same two models (bench/protocols.py): REST JSON, REST binary and gRPC
to modelfn, each with Triton's client (``tritonclient.http``, ``tritonclient.grpc``), at concurrency
1 and 8: bench/results/compare_protocols.md and compare_protocols.png. ``--protocols-only`` runs
just those; ``--skip-protocols`` leaves them out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import batching  # noqa: E402  (its wrk runner)
import coldstart  # noqa: E402
import medium_model  # noqa: E402
import protocols  # noqa: E402

VENVS = HERE / ".venvs"
CACHE = HERE / ".cache"
ENVIRONMENTS = {  # pinned to the versions the project tests with, so pip's cache serves them
    "handwritten": ["functions-framework==3.10.2", "onnxruntime==1.31.1", "numpy==2.4.6"],
    # uvloop 0.22 changed get_event_loop(); MLServer 1.7.1's inference-pool worker then dies at start.
    "mlserver": ["mlserver==1.7.1", "onnxruntime==1.31.1", "uvloop==0.21.0"],
    "flask-keras": ["flask", "gunicorn", "tensorflow-cpu==2.21.0", "keras==3.15.1"],
}


class Request(NamedTuple):
    path: str
    body: bytes
    content_type: str = "application/json"
    header_length: int | None = None  # Inference-Header-Content-Length, for OIP binary bodies


class System(NamedTuple):
    command: Callable[[int, Path], list[str]]  # (port, scratch) -> argv
    env: dict[str, str]
    request: Request


def venv(name: str) -> Path:
    """bench/.venvs/<name>, created and installed on first use."""
    folder = VENVS / name
    marker = folder / ".installed"
    if not marker.exists() or marker.read_text() != " ".join(ENVIRONMENTS[name]):
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        subprocess.run([str(folder / "bin/python"), "-m", "pip", "install", "-q", *ENVIRONMENTS[name]], check=True)
        marker.write_text(" ".join(ENVIRONMENTS[name]))
    return folder / "bin"


def oip(name: str, shape: list[int], values: list) -> bytes:
    return json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": "FP32", "data": values}]}).encode()


def systems(model: str, folder: Path, keras_file: Path, scratch: Path) -> dict[str, System]:
    import numpy as np

    shape = [1, 64] if model == "digits" else [1, 224, 224, 3]
    x = np.random.default_rng(0).random(shape, dtype=np.float32) * (16 if model == "digits" else 1)
    name = "pixels" if model == "digits" else "image"
    onnx_file = folder / "model.onnx"
    ff = [*coldstart.FF[1:]]  # without the interpreter: each system brings its own
    mlserver_folder = scratch / f"mlserver-{model}"
    mlserver_folder.mkdir(exist_ok=True)
    shutil.copy(HERE / "alternatives/mlserver/onnx_runtime.py", mlserver_folder)
    (mlserver_folder / "model-settings.json").write_text(json.dumps(
        {"name": model, "implementation": "onnx_runtime.OnnxModel", "parameters": {"uri": str(onnx_file)}}
    ))  # fmt: skip
    out = {
        "modelfn": System(
            lambda port, _: [sys.executable, *ff, "--source", str(folder / "main.py"), "--port", str(port)],
            {"MODELFN_LOG_LEVEL": "WARNING"},
            Request(f"/v2/models/{model}/infer", oip(name, shape, x.ravel().tolist())),
        ),
        "hand-written": System(
            lambda port, _: [
                str(venv("handwritten") / "python"),
                *ff,
                "--source",
                str(HERE / "floors/handwritten_main.py"),
                "--port",
                str(port),
            ],
            {"BENCH_MODEL": str(onnx_file), "BENCH_INPUT": name},
            Request("/", json.dumps({name: x.tolist()}).encode()),
        ),
        "MLServer": System(
            lambda port, _: [str(venv("mlserver") / "mlserver"), "start", str(mlserver_folder)],
            {},  # ports come from MLSERVER_* variables, set per run
            Request(f"/v2/models/{model}/infer", oip(name, shape, x.ravel().tolist())),
        ),
        "Flask + Keras": System(
            lambda port, _: [
                str(venv("flask-keras") / "gunicorn"),
                "-b",
                f"127.0.0.1:{port}",
                "--threads",
                "8",
                "--chdir",
                str(HERE / "alternatives/flask_keras"),
                "app:app",
            ],
            {"BENCH_MODEL": str(keras_file), "TF_CPP_MIN_LOG_LEVEL": "3"},
            Request("/predict", json.dumps({"instances": x.tolist()}).encode()),
        ),
    }
    if model == "digits":  # the HTTP floor: functions-framework answering a constant, no model
        out["floor: functions-framework, constant answer"] = out["hand-written"]._replace(
            command=lambda port, _: [
                *[str(venv("handwritten") / "python"), *ff],
                *["--source", str(HERE / "floors/constant_main.py"), "--port", str(port)],
            ]
        )
    if model == "mobilenet":
        header = json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": "FP32",
                                         "parameters": {"binary_data_size": x.nbytes}}]}).encode()  # fmt: skip
        out["modelfn, binary tensors"] = out["modelfn"]._replace(
            request=Request(f"/v2/models/{model}/infer", header + x.tobytes(), "application/octet-stream", len(header))
        )
    return out


def start(system: System, port: int, scratch: Path) -> contextlib.AbstractContextManager[subprocess.Popen]:
    # MLServer's ports, and its Prometheus files kept out of the working directory.
    mlserver = {
        "MLSERVER_HTTP_PORT": str(port),
        "MLSERVER_GRPC_PORT": str(coldstart.free_port()),
        "MLSERVER_METRICS_PORT": str(coldstart.free_port()),
        "MLSERVER_METRICS_DIR": str(scratch / "metrics"),
    }
    return coldstart.server(system.command(port, scratch), {**system.env, **mlserver})


def post(port: int, request: Request, timeout: float = 120) -> int:
    import urllib.request

    headers = {"Content-Type": request.content_type}
    if request.header_length is not None:
        headers["Inference-Header-Content-Length"] = str(request.header_length)
    message = urllib.request.Request(f"http://127.0.0.1:{port}{request.path}", data=request.body, headers=headers)
    with urllib.request.urlopen(message, timeout=timeout) as response:
        response.read()
        return response.status


def first_answer(process: subprocess.Popen, port: int, request: Request) -> float:
    started = time.perf_counter()
    while True:
        try:
            if post(port, request) == 200:
                return time.perf_counter() - started
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"exited with {process.returncode}") from None
            time.sleep(0.005)


def pss_mb(group: int) -> float:
    """Proportional set size of every process in the group (shared pages counted once in all)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != group:
                continue
            for line in (entry / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except (OSError, ProcessLookupError):
            continue
    return total / 1024


def wrk_script(request: Request, scratch: Path, label: str) -> Path:
    body = scratch / f"{label}.body"
    body.write_bytes(request.body)
    lines = ['wrk.method = "POST"', f'wrk.headers["Content-Type"] = "{request.content_type}"']
    if request.header_length is not None:
        lines.append(f'wrk.headers["Inference-Header-Content-Length"] = "{request.header_length}"')
    lines += [f'local f = io.open("{body}", "rb")', 'wrk.body = f:read("*all")', "f:close()"]
    script = scratch / f"{label}.lua"
    script.write_text("\n".join(lines) + "\n")
    return script


def throughput(system: System, scratch: Path, tag: str, levels: tuple[int, ...], seconds: int) -> dict[int, dict]:
    """A warm server's wrk figures at each concurrency in ``levels`` (after a second not counted)."""
    port = coldstart.free_port()
    with start(system, port, scratch) as process:
        first_answer(process, port, system.request)
        script = wrk_script(system.request, scratch, tag)
        url = f"http://127.0.0.1:{port}{system.request.path}"
        batching.wrk(url, levels[0], 1, script)  # a second to warm up, not counted
        return {level: batching.wrk(url, level, seconds, script) for level in levels}


def main() -> None:
    parser = argparse.ArgumentParser(description="modelfn beside the alternatives.")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--load-rounds", type=int, default=3, help="Throughput rounds per system (medians).")
    parser.add_argument("--protocols-only", action="store_true", help="Only REST JSON, REST binary and gRPC.")
    parser.add_argument("--skip-protocols", action="store_true", help="Leave the protocols' rows out.")
    args = parser.parse_args()
    mobilenet = medium_model.build(CACHE / "mobilenet")
    if not args.skip_protocols:
        for folder in (ROOT / "functions/digits", mobilenet):
            subprocess.run([sys.executable, "-m", "modelfn", "check", str(folder)], check=True, capture_output=True)
        found = protocols.run({"digits": ROOT / "functions/digits", "mobilenet": mobilenet}, args.runs, args.seconds)
        print(protocols.write(found, args.runs, args.seconds))
    if args.protocols_only:
        return
    batching.require_wrk()
    keras_mobilenet = medium_model.build_keras(CACHE / "mobilenet.keras")
    models = {"digits": (ROOT / "functions/digits", ROOT / "functions/digits-keras/model.keras", (1, 16)),
              "mobilenet": (mobilenet, keras_mobilenet, (1, 8))}  # fmt: skip
    for folder, _, _ in models.values():
        subprocess.run([sys.executable, "-m", "modelfn", "check", str(folder)], check=True, capture_output=True)
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="modelfn-compare-") as scratch_dir:
        scratch = Path(scratch_dir)
        for model, (folder, keras_file, levels) in models.items():
            table = systems(model, folder, keras_file, scratch)
            results[model] = {label: {"cold": [], "pss": [], "load": {}} for label in table}
            labels = list(table)
            for run in range(args.runs):  # cold starts, interleaved and rotated
                for label in coldstart.rotated(labels, run):
                    port = coldstart.free_port()
                    with start(table[label], port, scratch) as process:
                        results[model][label]["cold"].append(first_answer(process, port, table[label].request))
                        results[model][label]["pss"].append(pss_mb(process.pid))
                print(f"{model}: cold run {run + 1}/{args.runs} done", file=sys.stderr)
            for round_ in range(args.load_rounds):  # throughput, warm: rounds rotated, as the cold starts
                for label in coldstart.rotated(labels, round_):
                    tag = f"{model}-{labels.index(label)}"
                    for level, found in throughput(table[label], scratch, tag, levels, args.seconds).items():
                        results[model][label]["load"].setdefault(level, []).append(found)
                print(f"{model}: load round {round_ + 1}/{args.load_rounds} done", file=sys.stderr)
    write(results, models, args)


def load_medians(samples: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the rounds."""
    return {key: statistics.median(sample[key] for sample in samples) for key in samples[0]}


def write(results: dict, models: dict, args: argparse.Namespace) -> None:
    lines = [f"modelfn beside the alternatives ({args.runs} interleaved cold starts; wrk {args.seconds} s per "
             f"point in {args.load_rounds} rotated rounds; {os.cpu_count()} CPUs; medians).", ""]  # fmt: skip
    for model, table in results.items():
        low, high = models[model][2]
        lines += [
            f"**{model}**",
            "",
            f"| system | cold start | PSS after 1st prediction | req/s c{low} | vs hand-written | p50 c{low} "
            f"| req/s c{high} | vs hand-written | p50 c{high} | p99 c{high} |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        hand = {level: load_medians(table["hand-written"]["load"][level]) for level in (low, high)}
        for label, entry in table.items():
            a, b = load_medians(entry["load"][low]), load_medians(entry["load"][high])
            cold, pss = statistics.median(entry["cold"]) * 1000, statistics.median(entry["pss"])
            lines.append(
                f"| {label} | {cold:,.0f} ms | {pss:,.0f} MB | {a['rps']:,.0f} | {a['rps'] / hand[low]['rps']:.2f}x "
                f"| {a['p50']:.2f} ms | {b['rps']:,.0f} | {b['rps'] / hand[high]['rps']:.2f}x | {b['p50']:.2f} ms "
                f"| {b['p99']:.2f} ms |"
            )
        lines.append("")
    coldstart.RESULTS.mkdir(parents=True, exist_ok=True)
    (coldstart.RESULTS / "compare.md").write_text("\n".join(lines))
    print("\n".join(lines))
    plot(results, models)


def plot(results: dict, models: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, (model, table) in zip(axes, results.items(), strict=True):
        labels = list(table)
        high = models[model][2][1]
        cold = [statistics.median(table[label]["cold"]) for label in labels]
        rps = [load_medians(table[label]["load"][high])["rps"] for label in labels]
        ax.barh(range(len(labels)), cold, color="#1f77b4")
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        ax.set_xlabel("cold start, s (median)")
        for i, (seconds, rate) in enumerate(zip(cold, rps, strict=True)):
            ax.text(seconds, i, f" {seconds:.2f} s, {rate:,.0f} req/s at c{high}", va="center", fontsize=8)
        ax.set_xlim(0, max(cold) * 1.9)
        ax.set_title(model, fontsize=10)
    fig.tight_layout()
    fig.savefig(coldstart.RESULTS / "compare.png", dpi=110)


if __name__ == "__main__":
    main()
