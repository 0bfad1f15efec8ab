"""Batch traffic in the same drift summaries: ``modelfn batch`` here and on Beam write them as a function does.

The job loads the model as a served instance does, so ``MODELFN_MONITOR_STORE`` gives it a drift
watch; the job's rows are counted and flushed when it ends, and a report covers them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from engines_env import engines_python, run_script
from helpers import ROOT

CHURN = ROOT / "functions" / "churn"


def summarized_rows(store: Path) -> int:
    return sum(json.loads(p.read_text())["rows"] for p in store.rglob("*.json") if p.name != "reference.json")


@pytest.mark.parametrize("runner", ["local", pytest.param("beam", marks=pytest.mark.slow)])
def test_a_batch_job_writes_summaries_a_report_reads(runner: str, tmp_path) -> None:
    python = sys.executable if runner == "local" else str(engines_python())
    store = tmp_path / "monitor"
    env = {**os.environ, "MODELFN_MONITOR_STORE": str(store)}
    job = subprocess.run([python, "-m", "modelfn", "batch", str(CHURN), str(CHURN / "validation.csv"), "--output",
                          str(tmp_path / "out"), "--runner", runner], capture_output=True, text=True, env=env,
                         timeout=900)  # fmt: skip
    assert job.returncode == 0 and "1,000 predicted" in job.stdout, job.stdout + job.stderr
    assert summarized_rows(store) == 1000 and (store / "churn" / "1" / "reference.json").is_file()
    report = subprocess.run([sys.executable, "-m", "modelfn", "monitor", "report", "churn", "--store", str(store)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    # The job's rows are the reference's own: the report says no drift, and exits 0.
    assert report.returncode == 0 and report.stdout.rstrip().endswith("no drift"), report.stdout + report.stderr


@pytest.mark.slow
def test_spark_writes_a_summary_per_batch_of_rows(tmp_path) -> None:
    """Spark's Python workers may end without exit handlers: each UDF batch writes its summary."""
    store = tmp_path / "monitor"
    columns = ["tenure", "plan", "contract", "monthly"]
    case = {"name": "typed", "source": str(CHURN), "kind": "columns", "infer": True,
            "table": [str(CHURN / "validation.csv")], "columns": columns}  # fmt: skip
    config = {"cases": [case]}
    report = run_script("spark_job", config, tmp_path, MODELFN_MONITOR_STORE=str(store))["cases"]
    assert len(report["typed"]["rows"]) == 1000
    assert summarized_rows(store) == 1000
