"""The batch engines side by side on one input: ``modelfn batch`` here, on Beam, and on Spark.

Used by ``bench/batch.py``. Each run is a fresh process of the engines' interpreter
(``.tools/engines``, ``make tools``) over the same CSV files, writing every prediction:

- **single process**: ``modelfn batch FOLDER 'part-*.csv'``;
- **Beam**: ``modelfn batch ... --runner beam`` on Beam's portable runner, 1 worker (in-process) and
  2 workers (``--direct_num_workers=2 --direct_running_mode=multi_processing``);
- **Spark**: ``predict_udf(kind="csv")`` over ``spark.read.text`` on ``local[1]`` and ``local[2]``,
  the results written as JSON (the write is what makes Spark run the job).

Each reports the whole command's seconds (start-up, the JVM or the pipeline's set-up included) and
the job's own (from its summaries, or around Spark's write).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".tools" / "engines" / "bin" / "python"
TWO_WORKERS = ["--runner-option=--direct_num_workers=2", "--runner-option=--direct_running_mode=multi_processing"]

SPARK = """
import json, sys, time
started = time.monotonic()
from pyspark.sql import SparkSession, functions as F
spark = (SparkSession.builder.master(sys.argv[1]).config("spark.ui.enabled", "false")
         .config("spark.sql.shuffle.partitions", "2").getOrCreate())
from modelfn.spark import predict_udf
up = time.monotonic()
predict = predict_udf(sys.argv[2], kind="csv")
lines = spark.read.text(sys.argv[3]).filter(~F.col("value").startswith("p0"))
lines.withColumn("result", predict("value")).select("result.*").write.mode("overwrite").json(sys.argv[4])
done = time.monotonic()
rows = spark.read.json(sys.argv[4]).count()
print(json.dumps({"job": done - up, "startup": up - started, "rows": rows}))
"""


def environment() -> dict[str, str]:
    if not PYTHON.is_file():
        raise SystemExit("the batch engines are not installed: make tools")
    return {**os.environ, "PYSPARK_PYTHON": str(PYTHON), "MODELFN_LOG_LEVEL": "WARNING"}


def batch(folder: Path, pattern: str, out: Path, *extra: str) -> dict[str, float]:
    """``modelfn batch`` (here, or on Beam with ``extra``): the command's seconds and the job's (its summaries)."""
    for old in out.glob("*") if out.exists() else []:
        old.unlink()
    started = time.perf_counter()
    done = subprocess.run([str(PYTHON), "-m", "modelfn", "batch", str(folder), pattern, "--output", str(out), *extra],
                          capture_output=True, text=True, env=environment(), check=False)  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"modelfn batch {' '.join(extra)} failed: {done.stderr[-2000:]}")
    summaries = [json.loads(path.read_text()) for path in out.glob("*.summary.json")]
    rows = sum(s["predicted"] for s in summaries)
    # One process takes the files in turn, each summary timing its own; Beam's all time the one job.
    job = max(s["seconds"] for s in summaries) if extra else sum(s["seconds"] for s in summaries)
    return {"wall": wall, "job": job, "rows": rows}


def spark(folder: Path, pattern: str, out: Path, master: str) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run([str(PYTHON), "-c", SPARK, master, str(folder), pattern, str(out)],
                          capture_output=True, text=True, env=environment(), check=False)  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"spark failed: {done.stderr[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall": wall, "job": report["job"], "rows": report["rows"]}


ENGINES = {
    "single process": lambda folder, pattern, out: batch(folder, pattern, out),
    "Beam, 1 worker": lambda folder, pattern, out: batch(folder, pattern, out, "--runner", "beam"),
    "Beam, 2 workers": lambda folder, pattern, out: batch(folder, pattern, out, "--runner", "beam", *TWO_WORKERS),
    "Spark, local[1]": lambda folder, pattern, out: spark(folder, pattern, out, "local[1]"),
    "Spark, local[2]": lambda folder, pattern, out: spark(folder, pattern, out, "local[2]"),
}
