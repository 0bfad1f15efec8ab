"""Importing a function's entrypoint (functions-framework and Lambda) must stay cheap: no I/O, no heavy modules.

Run in a fresh interpreter, the way a cold instance starts.
"""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import DIGITS

HEAVY = [
    "numpy",
    "onnxruntime",
    "tensorflow",
    "keras",
    "sklearn",
    "torch",
    "PIL",
    "python_multipart",
    "google.cloud.storage",
    "google.cloud.pubsub",
    "boto3",
    "botocore",
    "yaml",
    "msgspec",
    "orjson",  # ~13 ms: the first request or log line imports it
]

PROBE = f"""
import json, sys
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
sys.path.insert(0, {str(DIGITS)!r})
import main
assert callable(main.handle)
from modelfn.adapters.aws_lambda import lambda_function
assert callable(lambda_function(main.__file__))
heavy = [m for m in {HEAVY!r} if m in sys.modules]
touched = [p for p in opened
           if p.startswith({str(DIGITS)!r}) and not p.endswith((".py", ".pyc")) and "__pycache__" not in p]
print(json.dumps({{"heavy": heavy, "touched": touched}}))
"""


def test_entrypoint_import_is_light_and_does_no_io() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    assert report == {"heavy": [], "touched": []}, report


def test_the_probe_would_catch_a_regression() -> None:
    """The same probe flags a heavy import and a model read when they do happen."""
    probe = PROBE.replace(
        "import main\n", "import main, numpy\nopen(main.__file__.replace('main.py', 'model.onnx'), 'rb').close()\n"
    )
    report = json.loads(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    )
    assert "numpy" in report["heavy"] and any(p.endswith("model.onnx") for p in report["touched"])


def test_the_entrypoint_sizes_openblas_before_numpy_loads() -> None:
    """numpy's BLAS pool is sized by the entry point (default 1), unless the deployment set it."""
    probe = PROBE + "import os; print(os.environ['OPENBLAS_NUM_THREADS'])\n"
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENBLAS_NUM_THREADS"}
    lines = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert lines[-1] == "1"
    env["OPENBLAS_NUM_THREADS"] = "4"
    lines = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert lines[-1] == "4"


def test_serving_an_onnx_function_never_imports_another_framework() -> None:
    probe = f"""
import sys, functions_framework
client = functions_framework.create_app("handle", {str(DIGITS / "main.py")!r}).test_client()
assert client.post("/predict", json={{"image": [[0] * 8] * 8}}).status_code == 200
frameworks = ("tensorflow", "keras", "sklearn", "skops", "joblib", "skl2onnx", "tf2onnx", "torch", "onnxscript", "PIL")
print(sorted(m for m in frameworks if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
