"""What modelfn's glibc allocator settings trade: a large model's load against the request path.

    python bench/allocator.py [--sizes 256,768] [--runs 5] [--rounds 3] [--seconds 6]

modelfn keeps its threads on one glibc heap (``MODELFN_MALLOC_ARENA_MAX=1``) and, for models of
64 MiB and more, maps and returns freed blocks of 1 MiB and more (``MODELFN_MALLOC_MMAP_THRESHOLD_KB``).
Two measurements, each side by side in one run:

- the load: the exported folder of bench/model_size.py (weights embedded, a full sha256 at start)
  loaded through the function's own entry point (``build_servable``, then ``load_and_wait``: on
  modelfn's loading thread) in a fresh process per run, with one heap and with glibc's default,
  each with the fixed threshold and with glibc's growing one; the time to loaded and the growth of
  the peak resident memory, medians of ``--runs``;
- the request path: digits and MobileNetV2 served as ``bench/compare.py`` serves them, with one heap
  and with ``MODELFN_MALLOC_ARENA_MAX=0``, under wrk, systems rotated over ``--rounds`` (medians).

Writes bench/results/allocator.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import batching  # noqa: E402
import coldstart  # noqa: E402
import compare  # noqa: E402
import medium_model  # noqa: E402
import model_size  # noqa: E402

RESULTS = HERE / "results"
LOADS = {  # label -> (MODELFN_MALLOC_ARENA_MAX, MODELFN_MALLOC_MMAP_THRESHOLD_KB)
    "a heap per thread, growing threshold (glibc's defaults)": ("0", "0"),
    "a heap per thread, 1 MiB threshold": ("0", "1024"),
    "one heap, growing threshold": ("1", "0"),
    "one heap, 1 MiB threshold (modelfn's defaults)": ("1", "1024"),
}
PROBE = """
import json, sys, time
import numpy, onnxruntime  # their imports are not the load
from modelfn.adapters.process import build_servable, load_and_wait
from modelfn.runtime import memory
def peak_bytes():  # VmHWM: ru_maxrss starts at the parent's peak, which Linux carries across exec
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
folder = sys.argv[1]
before = peak_bytes()
started = time.perf_counter()
function, settings = build_servable(folder, None, None)
assert load_and_wait(function, 600)
seconds = time.perf_counter() - started
growth = peak_bytes() - before
print(json.dumps({"seconds": seconds, "growth": growth, "arenas": memory._arenas_set,
                  "threshold": memory._threshold_set}))
"""


def measure_loads(folder: Path, runs: int) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {label: [] for label in LOADS}
    for run in range(runs):
        for label in coldstart.rotated(list(LOADS), run):
            arenas, threshold = LOADS[label]
            env = {**os.environ, "MODELFN_LOG_LEVEL": "WARNING", "MODELFN_MALLOC_ARENA_MAX": arenas,
                   "MODELFN_MALLOC_MMAP_THRESHOLD_KB": threshold}  # fmt: skip
            env.pop("MALLOC_ARENA_MAX", None)
            argv = [sys.executable, "-c", PROBE, str(folder)]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env, check=True).stdout
            sample = json.loads(out.splitlines()[-1])
            # The settings this row is named for are the ones the process ran with.
            assert (sample["arenas"], sample["threshold"]) == (arenas != "0", threshold != "0"), (label, sample)
            found[label].append(sample)
        print(f"loads: run {run + 1}/{runs} done", file=sys.stderr)
    return found


def measure_requests(rounds: int, seconds: int) -> dict[tuple[str, str, int], list[dict]]:
    mobilenet = medium_model.build(compare.CACHE / "mobilenet")
    models = {"digits": (HERE.parent / "functions/digits", (1, 16)), "MobileNetV2": (mobilenet, (1, 8))}
    found: dict[tuple[str, str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="modelfn-allocator-") as scratch_dir:
        scratch = Path(scratch_dir)
        for model, (folder, levels) in models.items():
            base = compare.systems("digits" if model == "digits" else "mobilenet", folder, Path(), scratch)
            served = {"JSON": base["modelfn"]}
            if "modelfn, binary tensors" in base:
                served["binary tensors"] = base["modelfn, binary tensors"]
            table = {}
            for kind, system in served.items():
                table[f"{kind}, one heap"] = system
                table[f"{kind}, glibc's heaps"] = system._replace(env={**system.env, "MODELFN_MALLOC_ARENA_MAX": "0"})
            labels = list(table)
            for round_ in range(rounds):
                for label in coldstart.rotated(labels, round_):
                    tag = f"{model}-{labels.index(label)}"
                    for level, sample in compare.throughput(table[label], scratch, tag, levels, seconds).items():
                        found.setdefault((model, label, level), []).append(sample)
                print(f"{model}: round {round_ + 1}/{rounds} done", file=sys.stderr)
    return found


def write(loads: dict[int, dict[str, list[dict]]], requests: dict, args: argparse.Namespace) -> str:
    def median(samples: list[dict], key: str) -> float:
        return statistics.median(sample[key] for sample in samples)

    lines = ["The exported folder (weights embedded, sha256 at start) loaded through the function's entry point, "
             f"fresh process per run, median of {args.runs}, {os.cpu_count()} CPUs.", "",
             "| model | allocator | loaded in | peak growth | vs the model |",
             "|---|---|---:|---:|---:|"]  # fmt: skip
    for size, label, samples in ((size, label, samples) for size, by in loads.items() for label, samples in by.items()):
        growth = median(samples, "growth")
        lines.append(f"| {size} MiB | {label} | {median(samples, 'seconds'):.2f} s | {growth / 2**20:,.0f} MiB "
                     f"| {growth / (size << 20):.2f}x |")  # fmt: skip
    lines += ["", f"Requests per second under wrk ({args.seconds} s, median of {args.rounds} rotated rounds), "
              "one heap against glibc's default heaps.", "",
              "| model | request | connections | one heap | glibc's heaps | ratio | p99, one heap | p99, glibc's |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for (model, label, level), samples in requests.items():
        if not label.endswith("one heap"):
            continue
        kind = label.removesuffix(", one heap")
        other = requests[(model, f"{kind}, glibc's heaps", level)]
        one, theirs = median(samples, "rps"), median(other, "rps")
        lines.append(f"| {model} | {kind} | {level} | {one:,.0f} | {theirs:,.0f} | {one / theirs:.2f}x "
                     f"| {median(samples, 'p99'):.1f} ms | {median(other, 'p99'):.1f} ms |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="modelfn's allocator settings: load and request path.")
    parser.add_argument("--sizes", default="256,768", help="Model sizes in MiB (bench/model_size.py's chains).")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    args = parser.parse_args()
    batching.require_wrk()
    loads = {size: measure_loads(model_size.build_model(size), args.runs) for size in map(int, args.sizes.split(","))}
    requests = measure_requests(args.rounds, args.seconds)
    text = write(loads, requests, args)
    (RESULTS / "allocator.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
