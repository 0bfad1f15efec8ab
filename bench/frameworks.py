"""The same models through each framework: cold start, memory, warm latency, size.

    python bench/frameworks.py [--runs 3]

Digits as Keras (functions/digits-keras), as a SavedModel (Keras' export, zipped),
ONNX (functions/digits) and int8 ONNX (modelfn convert --quantize int8); the digits CNN as a PyTorch
exported program (functions/digits-torch) and as its ONNX conversion; the breast-cancer model as skops
(functions/cancer), as a digest-pinned pickle, and as ONNX (modelfn convert).
Each is served by functions-framework; cold start is spawn to first answered
prediction, RSS is the function's processes (gunicorn master + worker) after
it, warm latency the median of 200 sequential one-row requests. Configurations
are interleaved and rotated. Writes bench/results/frameworks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import coldstart  # noqa: E402

CACHE = HERE / ".cache" / "frameworks"
#: Variants whose conversion the verification refused, with its reason (reported under the table).
REJECTED: dict[str, str] = {}


def prepare() -> dict[str, Path]:
    """Build the converted and pickled variants once (cached under bench/.cache)."""
    from modelfn.tooling.convert import convert

    CACHE.mkdir(parents=True, exist_ok=True)
    variants = {
        "digits, Keras": ROOT / "functions/digits-keras",
        "digits, SavedModel": CACHE / "digits-savedmodel",
        "digits, ONNX": ROOT / "functions/digits",
        "digits, ONNX int8": CACHE / "digits-int8",
        "digits CNN, PyTorch .pt2": ROOT / "functions/digits-torch",
        "digits CNN, ONNX": CACHE / "digits-torch-onnx",
        "cancer, skops": ROOT / "functions/cancer",
        "cancer, pickle": CACHE / "cancer-pickle",
        "cancer, ONNX": CACHE / "cancer-onnx",
    }
    if not variants["digits, ONNX int8"].exists():
        from modelfn.tooling.convert import ConversionRejected

        try:
            convert(ROOT / "functions/digits-keras", variants["digits, ONNX int8"], quantize="int8")
        except ConversionRejected as exc:  # the verification refused it: no row, and the table says why
            REJECTED["digits, ONNX int8"] = exc.message
    for label in REJECTED:
        variants.pop(label, None)
    if not variants["digits CNN, ONNX"].exists():
        convert(ROOT / "functions/digits-torch", variants["digits CNN, ONNX"])
    if not variants["cancer, ONNX"].exists():
        convert(ROOT / "functions/cancer", variants["cancer, ONNX"])
    if not variants["digits, SavedModel"].exists():
        _export_savedmodel(variants["digits, SavedModel"])
    pickled = variants["cancer, pickle"]
    if not pickled.exists():
        import skops.io
        import yaml

        shutil.copytree(ROOT / "functions/cancer", pickled, ignore=shutil.ignore_patterns("model.skops", ".modelfn"))
        data = pickle.dumps(skops.io.loads((ROOT / "functions/cancer/model.skops").read_bytes(), trusted=None))
        (pickled / "model.pkl").write_bytes(data)
        contract = yaml.safe_load((pickled / "modelfn.yaml").read_text())
        contract["artifact"] = {"uri": "model.pkl", "sha256": hashlib.sha256(data).hexdigest()}
        (pickled / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    for folder in variants.values():
        subprocess.run([sys.executable, "-m", "modelfn", "check", str(folder)], check=True, capture_output=True)
    return variants


def _export_savedmodel(folder: Path) -> None:
    """The digits-keras network exported by Keras as a SavedModel, zipped, with its contract."""
    import keras
    import yaml

    source = ROOT / "functions/digits-keras"
    keras.saving.load_model(source / "model.keras", compile=False).export(CACHE / "savedmodel-export", verbose=False)
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("model.keras", ".modelfn"))
    archive = shutil.make_archive(str(folder / "model"), "zip", root_dir=CACHE / "savedmodel-export")
    contract = yaml.safe_load((folder / "modelfn.yaml").read_text())
    contract["version"] = "1-savedmodel"
    contract["artifact"] = {"uri": "model.zip", "sha256": hashlib.sha256(Path(archive).read_bytes()).hexdigest()}
    contract["outputs"][0]["name"] = "output_0"  # the name Keras gives the serving signature's output
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))


def request_for(label: str) -> tuple[str, bytes]:
    name, width, input_name = ("digits", 64, "pixels") if label.startswith("digits") else ("cancer", 30, "features")
    body = {"inputs": [{"name": input_name, "shape": [1, width], "datatype": "FP32", "data": [1.0] * width}]}
    return f"/v2/models/{name}/infer", json.dumps(body).encode()


def measure(folder: Path, label: str) -> dict[str, float]:
    port = coldstart.free_port()
    path, body = request_for(label)
    command = [*coldstart.FF, "--source", str(folder / "main.py"), "--port", str(port)]
    started = time.perf_counter()
    url = f"http://127.0.0.1:{port}{path}"
    with coldstart.server(command, {"TF_CPP_MIN_LOG_LEVEL": "3"}) as process:
        while True:
            try:
                request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=120) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"{label} exited with {process.returncode}") from None
                time.sleep(0.002)
        cold = time.perf_counter() - started
        rss = _rss_mb(process.pid)
        latencies = []
        for _ in range(200):
            begin = time.perf_counter()
            with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as response:
                response.read()
            latencies.append(time.perf_counter() - begin)
        return {"cold": cold, "rss": rss, "warm": statistics.median(latencies)}


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (gunicorn master + worker), in MB."""
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    total_kb = 0
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description="Frameworks side by side.")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    variants = prepare()
    results: dict[str, list[dict[str, float]]] = {label: [] for label in variants}
    order = list(variants)
    for run in range(args.runs):
        for label in coldstart.rotated(order, run):
            results[label].append(measure(variants[label], label))
        print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    write(variants, results, args.runs)


def write(variants: dict[str, Path], results: dict[str, list[dict[str, float]]], runs: int) -> None:
    from modelfn.contract import load_contract

    lines = [
        f"Frameworks side by side ({runs} interleaved runs, {os.cpu_count()} CPUs; medians).",
        "",
        "| model | cold start | RSS after 1st prediction | warm latency (1 row, HTTP) | artifact | held-out accuracy |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, samples in results.items():
        contract = load_contract(variants[label])
        size = (variants[label] / contract.verified_artifact().uri).stat().st_size
        accuracy = _accuracy(variants[label], contract)
        median = {key: statistics.median(s[key] for s in samples) for key in ("cold", "rss", "warm")}
        lines.append(
            f"| {label} | {median['cold'] * 1000:,.0f} ms | {median['rss']:,.0f} MB | {median['warm'] * 1000:.2f} ms "
            f"| {size / 1024:,.1f} KB | {accuracy} |"
        )
    keras, onnx = results["digits, Keras"], results["digits, ONNX"]
    cold_ratio = statistics.median(s["cold"] for s in keras) / statistics.median(s["cold"] for s in onnx)
    rss_ratio = statistics.median(s["rss"] for s in keras) / statistics.median(s["rss"] for s in onnx)
    lines += ["", f"digits: ONNX cold start {cold_ratio:.1f}x faster and RSS {rss_ratio:.1f}x smaller than Keras."]
    lines += [f"{label}: not measured, {reason}." for label, reason in REJECTED.items()]
    torch, cnn = results["digits CNN, PyTorch .pt2"], results["digits CNN, ONNX"]
    cold_ratio = statistics.median(s["cold"] for s in torch) / statistics.median(s["cold"] for s in cnn)
    rss_ratio = statistics.median(s["rss"] for s in torch) / statistics.median(s["rss"] for s in cnn)
    lines += [f"digits CNN: ONNX cold start {cold_ratio:.1f}x faster and RSS {rss_ratio:.1f}x smaller than PyTorch."]
    coldstart.RESULTS.mkdir(parents=True, exist_ok=True)
    (coldstart.RESULTS / "frameworks.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _accuracy(folder: Path, contract) -> str:  # type: ignore[no-untyped-def]
    report = folder / "conversion-report.json"
    if report.is_file():
        return f"{json.loads(report.read_text())['accuracy']['converted']:.3f}"
    return f"{contract.docs.metrics.get('heldout_accuracy', float('nan')):.3f}"


if __name__ == "__main__":
    main()
