"""The browser and the edge beside the function: bundle sizes, and time to the first prediction.

    python bench/browser_edge.py [--runs 5]

Builds the web and edge bundles of functions/digits and functions/helpdesk, then, interleaved
round by round (the order rotated each round), times from a standing start to the first answered
prediction:

- the web bundle in a fresh headless Chromium (nothing cached), cross-origin isolated (WebAssembly
  threads) and not (one thread): navigation start to the example's answer, in the page's clock;
- the edge runner in a virtual environment with only onnxruntime and numpy: spawn of
  ``python -m modelfn.edge serve`` to the first answered ``POST /predict``;
- the function: functions-framework spawn to the first answered prediction (bench/coldstart.py's
  lazy-load set-up), the cold start the others are compared with.

Writes bench/results/browser_edge.md and browser_edge.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from charts import publish
from coldstart import FF, free_port, oip_body, rotated, time_server

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
BARE = ROOT / "bench" / ".venvs" / "edge"
MIB = 1024 * 1024


def bare_python() -> Path:
    """A virtual environment with onnxruntime and numpy only (made once, kept in bench/.venvs)."""
    python = BARE / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BARE)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-c", str(ROOT / "packaging/constraints.txt"),
                        "onnxruntime", "numpy"], check=True)  # fmt: skip
    return python


def time_edge(python: Path, bundle: Path, example: dict) -> float:
    """Seconds from spawning the edge runner to its first answered POST /predict."""
    import urllib.error
    import urllib.request

    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen([str(python), "-m", "modelfn.edge", "serve", "--port", str(port)], cwd=bundle,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    body = json.dumps(example).encode()
    try:
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body)
                with urllib.request.urlopen(request, timeout=30) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None:
                    raise RuntimeError("the edge runner exited") from None
                time.sleep(0.002)
    finally:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from modelfn.contract import compile_contract
    from modelfn.tooling.browser_timing import first_prediction
    from modelfn.tooling.convert import Thresholds
    from modelfn.tooling.edge_bundle import build_edge
    from modelfn.tooling.web_bundle import build_web

    out = Path(tempfile.mkdtemp(prefix="modelfn-bench-"))
    web = {name: build_web(FUNCTIONS / name, out / "web") for name in ("digits", "helpdesk")}
    edge = {name: build_edge(FUNCTIONS / name, out / "edge") for name in ("digits", "helpdesk")}
    edge["digits, int8"] = build_edge(FUNCTIONS / "digits", out / "edge-int8", quantize="int8",
                                      thresholds=Thresholds(0.2, 0.99))  # fmt: skip
    python = bare_python()
    examples = {name: compile_contract(FUNCTIONS / name).example for name in ("digits", "helpdesk")}
    port = free_port()
    systems = {
        "digits: browser, threads (COOP/COEP)": lambda: first_prediction(Path(web["digits"].output))[
            "first_prediction_ms"] / 1000,
        "digits: browser, one thread": lambda: first_prediction(Path(web["digits"].output), isolated=False)[
            "first_prediction_ms"] / 1000,
        "helpdesk: browser, threads (COOP/COEP)": lambda: first_prediction(Path(web["helpdesk"].output))[
            "first_prediction_ms"] / 1000,
        "digits: edge runner (onnxruntime + numpy)": lambda: time_edge(python, Path(edge["digits"].output),
                                                                      examples["digits"]),
        "helpdesk: edge runner (onnxruntime + numpy)": lambda: time_edge(python, Path(edge["helpdesk"].output),
                                                                        examples["helpdesk"]),
        "digits: the function (functions-framework cold start)": lambda: time_server(
            [*FF, "--source", str(FUNCTIONS / "digits" / "main.py"), "--port", str(port)], "/v2/models/digits/infer",
            oip_body(), port),
    }  # fmt: skip
    samples: dict[str, list[float]] = {name: [] for name in systems}
    for run in range(args.runs):
        for name in rotated(list(systems), run):
            samples[name].append(systems[name]())
        print(f"round {run + 1}/{args.runs} done", file=sys.stderr)
    write_results(web, edge, samples, args.runs)


def write_results(web: dict, edge: dict, samples: dict[str, list[float]], runs: int) -> None:
    lines = [
        "# The browser and the edge beside the function",
        "",
        f"`python bench/browser_edge.py --runs {runs}`: one machine, one run, set-ups interleaved and rotated.",
        "",
        "## Web bundles (`modelfn build --target web`)",
        "",
        "| bundle | WebAssembly | (gzip) | runtime script | model | page | total | total gzip |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, report in web.items():
        s = report.sizes
        model = report.models[0]
        kind = model["file"].rsplit(".", 1)[1].upper()
        lines.append(
            f"| {name} | {s['wasm'] / MIB:.1f} MiB | {s['wasm_gzip'] / MIB:.1f} MiB | {s['runtime_js'] / 1024:.0f} KiB "
            f"| {model['bytes'] / 1024:.0f} KiB ({kind}) | {s['page'] / 1024:.0f} KiB "
            f"| {s['total'] / MIB:.1f} MiB | {s['total_gzip'] / MIB:.1f} MiB |"
        )
    lines += ["", "## Edge bundles (`modelfn build --target edge`)", "",
              "| bundle | model (ORT) | runner | total | zip | operators |", "|---|---|---|---|---|---|"]  # fmt: skip
    for name, report in edge.items():
        operators = "; ".join(_ops(line) for line in report.operators)
        lines.append(
            f"| {name} | {report.model_bytes / 1024:.1f} KiB | {report.code_bytes / 1024:.0f} KiB | "
            f"{report.total_bytes / 1024:.0f} KiB | {report.archive_bytes / 1024:.0f} KiB | {operators} |"
        )
    lines += ["", "## Time to the first prediction (median of the runs, seconds)", "",
              "| set-up | median | min | max |", "|---|---|---|---|"]  # fmt: skip
    function = statistics.median(samples["digits: the function (functions-framework cold start)"])
    for name, values in samples.items():
        lines.append(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |")
    lines += ["", f"The function's cold start, {function:.3f} s, is the reference: the browser pays for fetching and "
              "compiling 14 MB of WebAssembly once per visitor (then cached for a year), the edge runner for "
              "importing ONNX Runtime and numpy."]  # fmt: skip
    publish("browser_edge", "\n".join(lines) + "\n", samples, xlabel="seconds to the first prediction (median)",
            title="The browser, the edge and the function", colors=("#2563eb", "#60a5fa", "#2563eb", "#16a34a",
                                                                    "#16a34a", "#6b7280"))  # fmt: skip


def _ops(line: str) -> str:
    import re

    return re.sub(r"[{].*?[}](?=,|$)", "", line)


if __name__ == "__main__":
    main()
