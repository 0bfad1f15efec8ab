"""The batch engines' environment (``make tools``: ``.tools/engines``): Apache Beam and Spark with modelfn.

Beam and Spark pin packages the test environment cannot take (protobuf < 7), so their tests run the
engines' own interpreter in a subprocess: the scripts in ``tests/engines/``, or ``python -m modelfn``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT

PYTHON = ROOT / ".tools" / "engines" / "bin" / "python"
SCRIPTS = Path(__file__).parent / "engines"
#: Generous: a JVM and a pipeline start on a busy 2-core machine; a hang still ends the test.
TIMEOUT_S = 900


def engines_python() -> Path:
    if not PYTHON.is_file():
        pytest.fail("the batch engines are not installed: `make tools` installs them in .tools/engines")
    return PYTHON


def engine_env(**extra: str) -> dict[str, str]:
    """The environment for the engines' interpreter: Spark's workers run the same one."""
    python = str(engines_python())
    return {**os.environ, "PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python, **extra}


def run_engine(*args: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
    """``.tools/engines/bin/python ARGS``; with ``check``, a failure shows its stderr."""
    done = subprocess.run([str(engines_python()), *args], capture_output=True, text=True, timeout=TIMEOUT_S,
                          env=engine_env(**extra), check=False)  # fmt: skip
    if check:
        assert done.returncode == 0, done.stderr[-6000:]
    return done


def run_script(name: str, config: dict[str, Any], tmp_path: Path, **extra: str) -> dict[str, Any]:
    """Run ``tests/engines/<name>.py CONFIG`` in the engines' interpreter (``extra``: its environment); its report."""
    config_path = tmp_path / f"{name}.config.json"
    report_path = tmp_path / f"{name}.report.json"
    config_path.write_text(json.dumps({**config, "report": str(report_path)}))
    run_engine(str(SCRIPTS / f"{name}.py"), str(config_path), **extra)
    return json.loads(report_path.read_text())


def modelfn_batch(*args: str, beam: bool = False, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``modelfn batch ARGS`` in the engines' interpreter, on Beam's local runner with ``beam``."""
    runner = ["--runner", "beam"] if beam else []
    return run_engine("-m", "modelfn", "batch", *args, *runner, check=check)
