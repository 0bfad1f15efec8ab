"""Cold start by artifact source: local folder, GCS emulator, S3 emulator; disk tier cold and warm.

    python bench/storage_coldstart.py [--runs 5]

For the digits model (21 KB) and MobileNetV2 with random weights (~14 MB,
built by bench/medium_model.py). The emulators run in this process, on this
machine: the figures compare modelfn's paths (registry reads, digest check,
disk tier, parallel ranged reads), not cloud network latency. Configurations
are interleaved and rotated run by run. Writes bench/results/storage.md and
storage.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

import coldstart  # noqa: E402
import medium_model  # noqa: E402
from emulators import S3_ENV, environment, gcs_server, new_bucket, s3_server  # noqa: E402

from modelfn.registry import Registry  # noqa: E402

DIGITS = HERE.parent / "functions" / "digits"


def request_for(folder: Path) -> tuple[str, bytes]:
    name = "digits" if folder == DIGITS else "mobilenet"
    shape = [1, 64] if name == "digits" else [1, 224, 224, 3]
    count = 64 if name == "digits" else 224 * 224 * 3
    body = {"inputs": [{"name": "pixels" if name == "digits" else "image", "shape": shape, "datatype": "FP32",
                        "data": [0.0] * count}]}  # fmt: skip
    return f"/v2/models/{name}/infer", json.dumps(body).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description="Cold start by artifact source.")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    models = {"digits (21 KB)": DIGITS, "MobileNetV2 (14 MB)": medium_model.build(HERE / ".cache" / "mobilenet")}
    for folder in models.values():  # the build step: compiled contract
        subprocess.run([sys.executable, "-m", "modelfn", "check", str(folder)], check=True, capture_output=True)

    with s3_server() as s3_url, gcs_server() as gcs_url:
        env = {**S3_ENV, "AWS_ENDPOINT_URL": s3_url, "STORAGE_EMULATOR_HOST": gcs_url, "GOOGLE_CLOUD_PROJECT": "bench"}
        with environment(env):
            refs = {}
            for scheme in ("gs", "s3"):
                uri = f"{scheme}://{new_bucket(scheme)}/models"
                registry = Registry.open(uri)
                for folder in models.values():
                    result = registry.push(folder)
                    registry.promote(result.name, result.version, "prod")
                refs[scheme] = uri
            configs = []
            for label, folder in models.items():
                name = "digits" if folder == DIGITS else "mobilenet"
                configs.append((label, "local folder", folder, {}, None))
                for scheme, store in (("gs", "GCS emulator"), ("s3", "S3 emulator")):
                    ref = {"MODELFN_MODEL": f"{refs[scheme]}/{name}@prod"}
                    configs.append((label, f"{store}, disk cold", folder, ref, "cold"))
                    configs.append((label, f"{store}, disk warm", folder, ref, "warm"))
            samples: dict[tuple[str, str], list[float]] = {(c[0], c[1]): [] for c in configs}
            warm_dir = Path(tempfile.mkdtemp(prefix="modelfn-bench-warm-"))
            for run in range(args.runs):
                for label, source, folder, extra, disk in coldstart.rotated(configs, run):
                    cache = warm_dir if disk == "warm" else Path(tempfile.mkdtemp(prefix="modelfn-bench-cold-"))
                    if disk == "warm" and not any(warm_dir.iterdir()):
                        _serve_once(folder, {**extra, "MODELFN_CACHE_DIR": str(warm_dir)})  # fill it
                    os.environ.update({**extra, "MODELFN_CACHE_DIR": str(cache)})
                    try:
                        samples[(label, source)].append(_serve_once(folder, {}))
                    finally:
                        for key in extra:
                            os.environ.pop(key, None)
                        if disk != "warm":
                            shutil.rmtree(cache, ignore_errors=True)
                print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
            shutil.rmtree(warm_dir, ignore_errors=True)
    write_results(samples, args.runs)


def _serve_once(folder: Path, extra: dict[str, str]) -> float:
    os.environ.update(extra)
    try:
        port = coldstart.free_port()
        path, body = request_for(folder)
        command = [*coldstart.FF, "--source", str(folder / "main.py"), "--port", str(port)]
        return coldstart.time_server(command, path, body, port)
    finally:
        for key in extra:
            os.environ.pop(key, None)


def write_results(samples: dict[tuple[str, str], list[float]], runs: int) -> None:
    coldstart.RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [
        f"Cold start by artifact source, spawn to first answered prediction ({runs} interleaved runs, "
        f"{os.cpu_count()} CPUs; emulators on the same machine).",
        "",
        "| model | artifact source | median | min | max |",
        "|---|---|---:|---:|---:|",
    ]
    for (label, source), values in samples.items():
        median, low, high = (statistics.median(values) * 1000, min(values) * 1000, max(values) * 1000)
        lines.append(f"| {label} | {source} | {median:.0f} ms | {low:.0f} ms | {high:.0f} ms |")
    (coldstart.RESULTS / "storage.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(samples)


def plot(samples: dict[tuple[str, str], list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(label for label, _ in samples))
    sources = list(dict.fromkeys(source for _, source in samples))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.8 / len(sources)
    colors = ["#f2a541", "#6baed6", "#1f77b4", "#a1d99b", "#31a354"]
    for index, source in enumerate(sources):
        medians = [statistics.median(samples[(m, source)]) * 1000 for m in models]
        positions = [i + (index - (len(sources) - 1) / 2) * width for i in range(len(models))]
        bars = ax.bar(positions, medians, width, label=source, color=colors[index % len(colors)])
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("spawn to first prediction (ms, median)")
    ax.legend(fontsize=8, ncols=3, loc="upper left")
    ax.set_ylim(0, max(statistics.median(v) for v in samples.values()) * 1000 * 1.3)
    fig.tight_layout()
    fig.savefig(coldstart.RESULTS / "storage.png", dpi=110)


if __name__ == "__main__":
    main()
