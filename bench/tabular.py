"""A tabular model served as trained, converted to ONNX, and by MLServer's scikit-learn runtime, in one run.

    python bench/tabular.py [--runs 5] [--seconds 6] [--load-rounds 2]     (needs wrk: apt-get install wrk)

The model is functions/churn: a ColumnTransformer (imputer, scaler, one-hot encoder) and a logistic
regression fitted on a pandas DataFrame of four named, mixed-type columns. Systems:

- modelfn as trained: the skops pipeline, given a DataFrame (functions/churn, functions-framework),
  in an environment of its own holding ``modelfn[sklearn]`` only, as a deployed function does;
- the same, called with a plain JSON row on ``POST /predict`` instead of the Open Inference Protocol;
- modelfn converted: ``modelfn convert functions/churn`` (one ONNX input per column), served the same way;
- MLServer 1.7 with its scikit-learn runtime (``mlserver-sklearn``) and the pandas codec, on the same
  pipeline dumped with joblib as that runtime loads it, asked for ``predict`` and ``predict_proba``.

Every OIP request is the same: one customer, one input per column, ``content_type: pd`` (the codec's
layout). Cold start is spawn to first answered prediction (systems interleaved and rotated, median
of ``--runs``), PSS the server's whole process group after it; wrk then measures requests per second
and p50/p99 at concurrency 1 and 8 in ``--load-rounds`` rotated rounds (medians). Bundle sizes are
``modelfn build`` for Lambda and Cloud Functions of both modelfn forms. Writes
bench/results/tabular.md and tabular.png.
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
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import batching  # noqa: E402
import coldstart  # noqa: E402
import compare  # noqa: E402

CHURN = ROOT / "functions" / "churn"
MLSERVER = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "scikit-learn==1.9.1", "uvloop==0.21.0"]
# modelfn as a user deploys it: the package with its scikit-learn extra, nothing else. The development
# environment is no stand-in: with torch installed beside it, skops's import pulls torch in (1.3 s).
MODELFN = ["-c", str(ROOT / "packaging" / "constraints.txt"), "-e", f"{ROOT}[sklearn]"]
CUSTOMER = {"tenure": 12, "plan": "pro", "contract": "month-to-month", "monthly": 45.5}
DATATYPES = {"tenure": "INT64", "plan": "BYTES", "contract": "BYTES", "monthly": "FP64"}
LEVELS = (1, 8)


def oip_body(outputs: list[str] | None = None) -> bytes:
    """MLServer's pandas codec layout: one input per column, shape [rows, 1], the request marked ``pd``."""
    inputs = [{"name": name, "shape": [1, 1], "datatype": DATATYPES[name], "data": [value]}
              for name, value in CUSTOMER.items()]  # fmt: skip
    body: dict = {"parameters": {"content_type": "pd"}, "inputs": inputs}
    if outputs:
        body["outputs"] = [{"name": name} for name in outputs]
    return json.dumps(body).encode()


def mlserver_folder(scratch: Path) -> Path:
    """The churn pipeline as MLServer's scikit-learn runtime loads it: a joblib file and model-settings.json."""
    import joblib

    from modelfn.offline import ModelSource

    folder = scratch / "mlserver-churn"
    folder.mkdir()
    pipeline = ModelSource.of(str(CHURN)).load().predictor._estimator  # the skops file, read with its pinned types
    joblib.dump(pipeline, folder / "model.joblib")
    settings = {"name": "churn", "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": str(folder / "model.joblib"), "version": "1"}}  # fmt: skip
    (folder / "model-settings.json").write_text(json.dumps(settings))
    return folder


def systems(converted: Path, mlserver: Path) -> dict[str, compare.System]:
    ff = [*coldstart.FF[1:]]
    python = str(compare.venv("modelfn-sklearn") / "python")
    oip = compare.Request("/v2/models/churn/infer", oip_body())

    def modelfn(folder: Path, request: compare.Request) -> compare.System:
        return compare.System(
            lambda port, _: [python, *ff, "--source", str(folder / "main.py"), "--port", str(port)],
            {"MODELFN_LOG_LEVEL": "WARNING"},
            request,
        )

    bin_dir = compare.venv("mlserver-sklearn")
    return {
        "modelfn, as trained (skops), OIP": modelfn(CHURN, oip),
        "modelfn, as trained, POST /predict row": modelfn(
            CHURN, compare.Request("/predict", json.dumps(CUSTOMER).encode())
        ),
        "modelfn, converted (ONNX), OIP": modelfn(converted, oip),
        "MLServer 1.7 sklearn runtime, pandas codec": compare.System(
            lambda port, _: [str(bin_dir / "mlserver"), "start", str(mlserver)],
            {},
            compare.Request("/v2/models/churn/infer", oip_body(["predict", "predict_proba"])),
        ),
    }


def bundle_sizes(folders: dict[str, Path], out: Path) -> list[str]:
    from modelfn.tooling import build as builder

    rows = []
    for label, folder in folders.items():
        for target in ("lambda", "gcf"):
            try:
                report = builder.build(folder, target, out)
            except builder.BuildError as error:
                rows.append(f"| {label} | {target} | | | {error.message.split(': ', 1)[-1].split(';')[0]} |")
                continue
            verdict = "fits" if not report.over(refused=False) else "fits; zip over 50 MB: deploy through S3"
            rows.append(f"| {label} | {target} | {report.sizes['zipped'] / builder.MB:,.1f} MB | "
                        f"{report.sizes['unzipped'] / builder.MB:,.1f} MB | {verdict} |")  # fmt: skip
    return rows


def measure(table: dict[str, compare.System], args: argparse.Namespace, scratch: Path) -> dict[str, dict]:
    results: dict[str, dict] = {label: {"cold": [], "pss": [], "load": {}} for label in table}
    labels = list(table)
    for run in range(args.runs):
        for label in coldstart.rotated(labels, run):
            port = coldstart.free_port()
            with compare.start(table[label], port, scratch) as process:
                results[label]["cold"].append(compare.first_answer(process, port, table[label].request))
                results[label]["pss"].append(compare.pss_mb(process.pid))
        print(f"cold run {run + 1}/{args.runs} done", file=sys.stderr)
    for round_ in range(args.load_rounds):
        for label in coldstart.rotated(labels, round_):
            found = compare.throughput(table[label], scratch, f"tabular-{labels.index(label)}", LEVELS, args.seconds)
            for level, sample in found.items():
                results[label]["load"].setdefault(level, []).append(sample)
        print(f"load round {round_ + 1}/{args.load_rounds} done", file=sys.stderr)
    return results


def write(results: dict[str, dict], bundles: list[str], report: dict, args: argparse.Namespace) -> str:
    low, high = LEVELS
    base = "modelfn, as trained (skops), OIP"
    lines = [
        f"The churn pipeline four ways ({args.runs} interleaved cold starts; wrk {args.seconds} s per point in "
        f"{args.load_rounds} rotated rounds; {os.cpu_count()} CPUs; medians).",
        "",
        f"| system | cold start | PSS after 1st prediction | req/s c{low} | p50 c{low} | req/s c{high} "
        f"| vs as trained | p50 c{high} | p99 c{high} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    reference = compare.load_medians(results[base]["load"][high])["rps"]
    for label, entry in results.items():
        a, b = compare.load_medians(entry["load"][low]), compare.load_medians(entry["load"][high])
        cold, pss = statistics.median(entry["cold"]) * 1000, statistics.median(entry["pss"])
        lines.append(
            f"| {label} | {cold:,.0f} ms | {pss:,.0f} MB | {a['rps']:,.0f} | {a['p50']:.2f} ms | {b['rps']:,.0f} "
            f"| {b['rps'] / reference:.2f}x | {b['p50']:.2f} ms | {b['p99']:.2f} ms |"
        )
    accuracy = report["accuracy"]
    lines += [
        "",
        f"Held-out accuracy (1,000 rows): as trained {accuracy['source']:.3f}, converted "
        f"{accuracy['converted']:.3f}; largest probability difference {report['max_abs_diff']:.2e}.",
        "",
        "Deployable sizes (`modelfn build`, Python 3.12, x86_64 Linux wheels; Lambda limits 50 MB zipped, "
        "250 MB unzipped; Cloud Functions 100 MB / 500 MB):",
        "",
        "| function | target | zipped | unzipped | verdict |",
        "|---|---|---:|---:|---|",
        *bundles,
        "",
    ]
    return "\n".join(lines)


def plot(results: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(results)
    cold = [statistics.median(results[label]["cold"]) for label in labels]
    rps = [compare.load_medians(results[label]["load"][LEVELS[1]])["rps"] for label in labels]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), sharey=True)
    for ax, values, title in ((axes[0], cold, "cold start, s (median)"), (axes[1], rps, f"req/s at c{LEVELS[1]}")):
        ax.barh(range(len(labels)), values, color="#1f77b4")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel(title)
        for i, value in enumerate(values):
            ax.text(value, i, f" {value:,.2f}" if value < 100 else f" {value:,.0f}", va="center", fontsize=8)
        ax.set_xlim(0, max(values) * 1.25)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(coldstart.RESULTS / "tabular.png", dpi=110)


def conversion(out: Path) -> dict:
    """``modelfn convert functions/churn``: the ONNX function, verified on the contract's validation rows."""
    subprocess.run([sys.executable, "-m", "modelfn", "convert", str(CHURN), "--out", str(out)],
                   check=True, capture_output=True)  # fmt: skip
    found = json.loads((out / "conversion-report.json").read_text())
    diffs = [entry["max_abs_diff"] for entry in found["outputs"].values() if "max_abs_diff" in entry]
    return {"accuracy": found["accuracy"], "max_abs_diff": max(diffs)}


def main() -> None:
    parser = argparse.ArgumentParser(description="A tabular model as trained, converted, and on MLServer.")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--load-rounds", type=int, default=2, help="Throughput rounds per system (medians).")
    args = parser.parse_args()
    batching.require_wrk()
    compare.ENVIRONMENTS["mlserver-sklearn"] = MLSERVER
    compare.ENVIRONMENTS["modelfn-sklearn"] = MODELFN
    with tempfile.TemporaryDirectory(prefix="modelfn-tabular-") as scratch_dir:
        scratch = Path(scratch_dir)
        converted = scratch / "churn-onnx"
        report = conversion(converted)
        bundles = bundle_sizes({"churn as trained": CHURN, "churn converted": converted}, scratch / "builds")
        results = measure(systems(converted, mlserver_folder(scratch)), args, scratch)
    text = write(results, bundles, report, args)
    coldstart.RESULTS.mkdir(parents=True, exist_ok=True)
    (coldstart.RESULTS / "tabular.md").write_text(text)
    plot(results)
    print(text)


if __name__ == "__main__":
    main()
