"""Cold start and peak memory by model size, every system side by side in one interleaved session.

    python bench/model_size.py [--runs 3] [--sizes 1,64,256,768,1536,3072] [--store-max-mb 768]

Models are chains of random-weight MatMuls (2048x2048 FP32, 16 MiB each; the 1 MB one is 512x512),
generated here and cached in bench/.cache/model_size/; the 3 GB one keeps its weights in one ONNX
external-data file, pinned by ``artifact.files``. For each size, in rotated order each run:

- a bare script: import onnxruntime, session from the path, one prediction (no HTTP);
- the hand-written functions-framework function (session created at import, from the path), on the
  model file as exported and, for reference, on the same laid-out files modelfn bundles;
- modelfn on the exported folder (a full sha256 at start: what ``modelfn serve`` runs in development);
- modelfn on the folder ``modelfn build`` bundles (weights laid out per ``deploy.weights: auto``),
  verifying at start, with ``deploy.verify: build``, and with that and ``MODELFN_ORT_PREPACK=0``;
- modelfn from the GCS and S3 emulators (the version ``modelfn push`` uploads, laid out the same way;
  ``MODELFN_MODEL`` pins it), with its cache folder on tmpfs (/dev/shm), as on Cloud Functions gen2
  and Cloud Run where /tmp is memory, with and without pre-packing;
- each store's fetch alone against its SDK's own parallel download of the same object
  (``transfer_manager`` for GCS, boto3's ``TransferConfig`` for S3), 4 workers of 8 MiB each.

Cold start is spawn to the first answered prediction. Peak memory is what the platform counts: the
largest sum, sampled every 10 ms, of the resident memory of the server's largest process (less its
mapped tmpfs pages, which are the cache's files) and of the bytes its cache holds in tmpfs, or that
process's VmHWM where it is larger. The emulators run in processes of their own.
Writes bench/results/model_size.{md,json,png}.
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
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from coldstart import FF, free_port, rotated, server  # noqa: E402

CACHE = HERE / ".cache" / "model_size"
RESULTS = HERE / "results"
DIM = 2048
MIB = 1 << 20
HAND = "hand-written functions-framework"
HAND_LAID = "hand-written, on the laid-out files"
NO_PREPACK = "no pre-packing"
SYSTEMS = [
    "bare script (no HTTP)",
    HAND,
    HAND_LAID,
    "modelfn, exported folder, sha256 at start",
    "modelfn, built bundle, sha256 at start",
    "modelfn, built bundle, verified at build",
    f"modelfn, built bundle, verified at build, {NO_PREPACK}",
    "modelfn, GCS emulator",
    f"modelfn, GCS emulator, {NO_PREPACK}",
    "modelfn, S3 emulator",
]


# -- models ---------------------------------------------------------------------------------------
def build_model(size_mb: int) -> Path:
    """A function folder with a MatMul chain of about ``size_mb`` MiB (cached by size)."""
    folder = CACHE / f"{size_mb}mb"
    if (folder / "modelfn.yaml").is_file():
        return folder
    import numpy as np
    import onnx
    import yaml
    from onnx import TensorProto, helper, numpy_helper

    from modelfn.tooling.pins import pins

    dim = 512 if size_mb < 16 else DIM
    layers = max(1, size_mb * MIB // (dim * dim * 4))
    rng = np.random.default_rng(size_mb)
    weights, nodes, previous = [], [], "x"
    for index in range(layers):
        matrix = rng.standard_normal((dim, dim), dtype=np.float32) * np.float32(dim**-0.5)
        weights.append(numpy_helper.from_array(matrix, f"w{index}"))
        nodes.append(helper.make_node("MatMul", [previous, f"w{index}"], [f"h{index}"]))
        previous = f"h{index}"
    nodes.append(helper.make_node("Identity", [previous], ["y"]))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, dim])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    external = size_mb >= 2048  # protobuf cannot serialize one message over 2 GB
    onnx.save_model(model, str(partial / "model.onnx"), save_as_external_data=external,
                    all_tensors_to_one_file=True, location="model.onnx.data")  # fmt: skip
    del model, weights, graph
    main, files = pins(partial / "model.onnx")
    contract = {
        "name": "big",
        "version": "1",
        "framework": "onnx",
        "artifact": {"uri": "model.onnx", "sha256": main, **({"files": files} if files else {})},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, dim]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, dim]}],
        "docs": {"description": f"{layers} random {dim}x{dim} MatMuls for benchmarks."},
    }
    (partial / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    entry = "from modelfn.adapters.gcf import http_function\n\nhandle = http_function(__file__)\n"
    (partial / "main.py").write_text(entry)
    partial.rename(folder)
    return folder


def build_bundles(folder: Path) -> tuple[Path, Path]:
    """The model folder as ``modelfn build`` bundles it, verifying at start and with ``deploy.verify: build``.

    The same calls the build makes (:func:`~modelfn.tooling.layout.lay_out_bundle`, then the
    verification record), without the wheels; the second folder hard-links the first's model files.
    """
    import yaml

    from modelfn.contract import load_contract
    from modelfn.tooling.build import record_verification
    from modelfn.tooling.layout import lay_out_bundle

    bundle, verified = folder.with_name(folder.name + "-bundle"), folder.with_name(folder.name + "-built")
    if not (bundle / ".modelfn" / "verified.json").is_file():
        partial = bundle.with_name(bundle.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(bundle, ignore_errors=True)
        partial.mkdir()
        for name in ("modelfn.yaml", "main.py"):
            shutil.copy2(folder / name, partial / name)
        if not lay_out_bundle(folder, partial, load_contract(folder)):
            for path in folder.glob("model.onnx*"):
                os.link(path, partial / path.name)
        record_verification(partial, load_contract(partial))
        partial.rename(bundle)
    shutil.rmtree(verified, ignore_errors=True)
    verified.mkdir()
    for path in bundle.iterdir():
        if path.is_file() and path.name != "modelfn.yaml":
            os.link(path, verified / path.name)
    contract = yaml.safe_load((bundle / "modelfn.yaml").read_text())
    contract["deploy"] = {"verify": "build"}
    (verified / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    record_verification(verified, load_contract(verified))
    return bundle, verified


def dim_of(folder: Path) -> int:
    import yaml

    return yaml.safe_load((folder / "modelfn.yaml").read_text())["inputs"][0]["shape"][1]


# -- emulators ------------------------------------------------------------------------------------
@contextlib.contextmanager
def emulators() -> Iterator[dict[str, str]]:
    """moto's S3 server and gcp-storage-emulator, each in a process of its own."""
    bin_dir = Path(sys.executable).parent
    s3_port, gcs_port = free_port(), free_port()
    s3 = subprocess.Popen([str(bin_dir / "moto_server"), "-p", str(s3_port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    gcs = subprocess.Popen([str(bin_dir / "gcp-storage-emulator"), "start", "--port", str(gcs_port), "--in-memory"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}", "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{gcs_port}",
        "GOOGLE_CLOUD_PROJECT": "bench",
    }  # fmt: skip
    try:
        for port in (s3_port, gcs_port):
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
                    break
                except urllib.error.HTTPError:
                    break
                except (urllib.error.URLError, ConnectionError):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"emulator on port {port} did not start") from None
                    time.sleep(0.1)
        yield env
    finally:
        for process in (s3, gcs):
            os.killpg(process.pid, 9)
            process.wait()


def push_everywhere(folder: Path, env: dict[str, str], schemes: tuple[str, ...]) -> dict[str, str]:
    """Push the folder's model to a new bucket in each emulator of ``schemes``; ``{scheme: bucket}``."""
    script = f"""
import uuid, boto3
from google.cloud import storage
from modelfn.registry import Registry
buckets = {{}}
for scheme in {schemes!r}:
    name = "bench-" + uuid.uuid4().hex[:10]
    boto3.client("s3").create_bucket(Bucket=name) if scheme == "s3" else storage.Client().create_bucket(name)
    Registry.open(f"{{scheme}}://{{name}}/models").push({str(folder)!r})
    buckets[scheme] = name
print(buckets)
"""
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, **env}, capture_output=True, text=True,
                          check=True, timeout=3600)  # fmt: skip
    return eval(done.stdout.strip().splitlines()[-1])  # a dict printed by the script above


# -- measuring ------------------------------------------------------------------------------------
def group_memory(pgid: int) -> tuple[int, int]:
    """``(resident bytes less mapped tmpfs pages, VmHWM)`` of the process group's largest process.

    The largest, not the sum: a forked gunicorn worker shares its master's pages, which a sum
    would count twice and the instance's memory accounting counts once. Mapped tmpfs pages
    (``RssShmem``) are the cache's files, which :func:`tree_bytes` counts.
    """
    rss = hwm = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            with open(f"/proc/{entry}/status") as handle:
                status = dict(line.split(":", 1) for line in handle if ":" in line)
        except (OSError, IndexError, ValueError):
            continue
        shmem = int(status.get("RssShmem", "0 kB").split()[0]) * 1024
        rss = max(rss, int(status.get("VmRSS", "0 kB").split()[0]) * 1024 - shmem)
        hwm = max(hwm, int(status.get("VmHWM", "0 kB").split()[0]) * 1024)
    return rss, hwm


def tree_bytes(path: Path | None) -> int:
    if path is None or not path.exists():
        return 0
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def time_server(command: list[str], path: str, body: bytes, env: dict[str, str], tmpfs: Path | None):
    """``(seconds to the first 200, peak bytes as the platform counts them)``."""
    port = int(command[command.index("--port") + 1])
    started = time.perf_counter()
    peak = 0
    with server(command, env) as process:
        url = f"http://127.0.0.1:{port}{path}"
        next_sample = 0.0
        while True:
            now = time.perf_counter()
            if now >= next_sample:
                rss, hwm = group_memory(process.pid)
                peak = max(peak, rss + tree_bytes(tmpfs), hwm)
                next_sample = now + 0.01
            try:
                request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=0.5) as response:
                    if response.status == 200:
                        elapsed = time.perf_counter() - started
                        rss, hwm = group_memory(process.pid)
                        return elapsed, max(peak, rss + tree_bytes(tmpfs), hwm)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if process.poll() is not None:
                    raise RuntimeError(f"{command} exited with {process.returncode}") from None
                time.sleep(0.005)


def time_bare(model: Path) -> tuple[float, int]:
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(HERE / "floors" / "bare_onnx_any.py"), str(model)],
                               start_new_session=True)  # fmt: skip
    peak = 0
    while process.poll() is None:
        rss, hwm = group_memory(process.pid)
        peak = max(peak, rss, hwm)
        time.sleep(0.01)
    if process.returncode:
        raise RuntimeError("the bare script failed")
    return time.perf_counter() - started, peak


def run_system(name: str, folders: dict[str, Path], buckets: dict[str, str], env: dict[str, str]):
    dim = dim_of(folders["plain"])
    if name.startswith("bare"):
        return time_bare(folders["plain"] / "model.onnx")
    port = free_port()
    if name in (HAND, HAND_LAID):
        command = [*FF, "--source", str(HERE / "floors" / "handwritten_main.py"), "--port", str(port)]
        body = json.dumps({"x": [[0.0] * dim]}).encode()
        model = folders["plain" if name == HAND else "bundle"] / "model.onnx"
        return time_server(command, "/", body, {"BENCH_MODEL": str(model), "BENCH_INPUT": "x"}, None)
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, dim], "datatype": "FP32", "data": [0.0] * dim}]})
    folder = folders["built" if "verified at build" in name else "bundle" if "bundle" in name else "plain"]
    command = [*FF, "--source", str(folder / "main.py"), "--port", str(port)]
    extra, tmpfs = {"MODELFN_LOG_LEVEL": "WARNING"}, None
    if NO_PREPACK in name:
        extra["MODELFN_ORT_PREPACK"] = "0"
    if "emulator" in name:
        scheme = "gs" if "GCS" in name else "s3"
        tmpfs = Path(tempfile.mkdtemp(prefix="modelfn-bench-", dir="/dev/shm"))
        extra |= env | {"MODELFN_MODEL": f"{scheme}://{buckets[scheme]}/models/big/1", "MODELFN_CACHE_DIR": str(tmpfs)}
    try:
        return time_server(command, "/v2/models/big/infer", body.encode(), extra, tmpfs)
    finally:
        if tmpfs is not None:
            shutil.rmtree(tmpfs, ignore_errors=True)


def time_fetch(how: str, scheme: str, bucket: str, file: tuple[str, str], env: dict[str, str]) -> float:
    """Seconds to fetch ``file`` (``(name, sha256)``) of the pushed version, in a fresh process."""
    dest = Path(tempfile.mkdtemp(prefix="modelfn-fetch-", dir="/dev/shm"))
    try:
        done = subprocess.run(
            [sys.executable, str(HERE / "floors" / "store_fetch.py"), how, scheme, bucket, f"models/big/1/{file[0]}",
             file[1], str(dest)], env={**os.environ, **env}, capture_output=True, text=True, check=True, timeout=3600,
        )  # fmt: skip
        return float(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(dest, ignore_errors=True)


# -- the session ----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description="Cold start and memory by model size.")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="1,64,256,768,1536,3072")
    parser.add_argument(
        "--store-max-mb",
        type=int,
        default=256,
        help="Largest model served from the S3 emulator (moto copies the whole object per range read).",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, dict] = {}
    with emulators() as env:
        for size in sizes:
            plain = build_model(size)
            bundle, built = build_bundles(plain)
            folders = {"plain": plain, "bundle": bundle, "built": built}
            for folder in folders.values():  # the compiled contract every deployed bundle carries
                subprocess.run([sys.executable, "-m", "modelfn", "check", str(folder)], check=True, capture_output=True)
            pinned = __import__("yaml").safe_load((bundle / "modelfn.yaml").read_text())["artifact"]
            # The fetch compared with the SDK's: the version's largest file (the weights, once laid out).
            fetched = max([("model.onnx", pinned["sha256"]), *pinned.get("files", {}).items()],
                          key=lambda item: (bundle / item[0]).stat().st_size)  # fmt: skip
            external = size >= 2048
            systems = [s for s in SYSTEMS if not (s.endswith("S3 emulator") and size > args.store_max_mb)]
            # What `modelfn push` uploads: the laid-out files (lay_out_bundle's), pinned by the bundle's contract.
            buckets = push_everywhere(bundle, env, ("gs", "s3") if size <= args.store_max_mb else ("gs",))
            times: dict[str, list[float]] = {s: [] for s in systems}
            peaks: dict[str, list[int]] = {s: [] for s in systems}
            fetches: dict[str, list[float]] = {}
            fetch_systems = [] if external else [
                (how, scheme) for scheme in ("gs", "s3") for how in ("sdk", "modelfn")
                if not (scheme == "s3" and size > args.store_max_mb)
            ]  # fmt: skip
            fetches = {f"{how} {scheme}": [] for how, scheme in fetch_systems}
            time_bare(plain / "model.onnx")  # the page cache warm, as on an instance's image
            for run in range(args.runs):
                for name in rotated(systems, run):
                    seconds, peak = run_system(name, folders, buckets, env)
                    times[name].append(seconds)
                    peaks[name].append(peak)
                for how, scheme in rotated(fetch_systems, run) if fetch_systems else []:
                    fetches[f"{how} {scheme}"].append(time_fetch(how, scheme, buckets[scheme], fetched, env))
                print(f"{size} MB: run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
            results[str(size)] = {"times": times, "peaks": peaks, "fetches": fetches,
                                  "bytes": sum(p.stat().st_size for p in plain.glob("model.onnx*"))}  # fmt: skip
            write(results, args.runs)


def write(results: dict[str, dict], runs: int) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "model_size.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [
        f"Cold start (spawn to first answered prediction, median of {runs} interleaved runs) and peak memory "
        f"as the platform counts it (resident + tmpfs), {os.cpu_count()} CPUs, Python {sys.version.split()[0]}.",
        "",
        "| model | system | cold start | vs hand-written | peak memory | vs hand-written |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for size, result in results.items():
        hand_t = statistics.median(result["times"][HAND])
        hand_m = statistics.median(result["peaks"][HAND])
        label = f"{result['bytes'] / MIB:,.0f} MiB" + (" (external data)" if int(size) >= 2048 else "")
        for name, values in result["times"].items():
            t, m = statistics.median(values), statistics.median(result["peaks"][name])
            lines.append(
                f"| {label} | {name} | {t:.2f} s | {t / hand_t:.2f}x | {m / MIB:,.0f} MiB | {m / hand_m:.2f}x |"
            )
    lines += [
        "",
        "Store fetch alone (seconds, median): modelfn's verified fetch against the SDK's parallel download.",
        "",
        "| model | store | SDK | modelfn (hashed while streaming) | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for result in results.values():
        for scheme, store in (("gs", "GCS emulator"), ("s3", "S3 emulator")):
            sdk, ours = result["fetches"].get(f"sdk {scheme}"), result["fetches"].get(f"modelfn {scheme}")
            if sdk and ours:
                a, b = statistics.median(sdk), statistics.median(ours)
                lines.append(f"| {result['bytes'] / MIB:,.0f} MiB | {store} | {a:.2f} s | {b:.2f} s | {b / a:.2f}x |")
    text = "\n".join(lines) + "\n"
    (RESULTS / "model_size.md").write_text(text)
    print(text)
    plot(results)


def plot(results: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = list(next(iter(results.values()))["times"])
    for name in names:
        xs = [results[s]["bytes"] / MIB for s in results if name in results[s]["times"]]
        ts = [statistics.median(results[s]["times"][name]) for s in results if name in results[s]["times"]]
        ms = [statistics.median(results[s]["peaks"][name]) / MIB for s in results if name in results[s]["times"]]
        style = "--" if name == HAND else "-"
        left.plot(xs, ts, style, marker="o", label=name)
        right.plot(xs, ms, style, marker="o", label=name)
    left.set(xlabel="model size (MiB)", ylabel="spawn to first answer (s)", title="Cold start")
    right.set(xlabel="model size (MiB)", ylabel="peak memory, resident + tmpfs (MiB)", title="Peak memory")
    left.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(RESULTS / "model_size.png", dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
