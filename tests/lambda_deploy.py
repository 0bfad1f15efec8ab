"""serverless.yml's zip functions as the local Lambda runners take them: built, unpacked, their models in a registry.

Shared by the Lambda emulator tests (``adapters/test_lambda_emulator.py``) and serverless-offline's
(``infra/test_serverless_offline.py``), through the session fixtures ``lambda_tasks`` and
``aws_registry`` in ``conftest.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3
import yaml
from emulators import new_bucket
from helpers import ROOT

from modelfn.contract import Contract, load_contract
from modelfn.runtime.model import zero_inputs

FUNCTIONS: dict[str, Any] = yaml.safe_load((ROOT / "serverless.yml").read_text())["functions"]
#: serverless.yml's zip functions: name -> the function folder its artifact is built from.
ZIPS = {name: Path(spec["package"]["artifact"]).name.removesuffix("-lambda.zip")
        for name, spec in FUNCTIONS.items() if "package" in spec}  # fmt: skip
#: The zip functions behind API Gateway.
HTTP = [name for name in ZIPS if any("http" in event for event in FUNCTIONS[name].get("events", []))]
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
T = TypeVar("T")


def build_tasks(out: Path) -> dict[str, Path]:
    """Each zip built for this interpreter and unpacked as Lambda unpacks it: folder -> task root."""
    from modelfn.tooling.build import build

    unpacked = {}
    for folder in sorted(set(ZIPS.values())):
        report = build(ROOT / "functions" / folder, "lambda", out, python=PYTHON)
        task = out / f"{folder}-task"
        with zipfile.ZipFile(report.output) as archive:
            archive.extractall(task)
        unpacked[folder] = task
    return unpacked


def make_registry() -> dict[str, str]:
    """The registry bucket and its -uploads and -results siblings, as serverless.yml names them, with
    every model a zip function's ``MODELFN_MODEL`` names pushed and aliased there."""
    bucket = new_bucket("s3")
    s3 = boto3.client("s3")
    for suffix in ("-uploads", "-results"):
        s3.create_bucket(Bucket=bucket + suffix)
    models = {FUNCTIONS[name]["environment"]["MODELFN_MODEL"].rsplit("/", 1)[1]
              for name in ZIPS if "MODELFN_MODEL" in FUNCTIONS[name].get("environment", {})}  # fmt: skip
    for reference in sorted(models):
        name, alias = reference.split("@")
        folder = ROOT / "functions" / name
        version = str(yaml.safe_load((folder / "modelfn.yaml").read_text())["version"])
        for args in (["push", str(folder)], ["promote", name, version, "--alias", alias]):
            done = subprocess.run([sys.executable, "-m", "modelfn", *args, "--registry", f"s3://{bucket}/models"],
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
            assert done.returncode == 0, done.stderr
    return {"registry": bucket, "uploads": bucket + "-uploads", "results": bucket + "-results"}


def environment_of(name: str, registry: dict[str, str]) -> dict[str, str]:
    """The function's environment from serverless.yml, ``${param:bucket}`` the test's registry bucket."""
    return {key: str(value).replace("${param:bucket}", registry["registry"])
            for key, value in FUNCTIONS[name].get("environment", {}).items()}  # fmt: skip


def v2_request(contract: Contract) -> dict[str, Any]:
    """An OIP request as the warm-up sends: zeros of the declared shapes (empty strings for BYTES), or for a
    table its example row, a column per input (an empty string is no category its encoders know), or for
    a generative model a short prompt."""
    if contract.table is not None and isinstance(contract.example, dict):
        return {"inputs": [{"name": spec.name, "shape": [1, 1], "datatype": spec.datatype,
                            "data": [contract.example[spec.name]]} for spec in contract.inputs]}  # fmt: skip
    if contract.framework == "genai":  # a prompt: an empty one is refused
        return {"inputs": [{"name": contract.inputs[0].name, "shape": [1], "datatype": "BYTES", "data": ["Hello"]}]}
    tensors = [{"name": name, "shape": list(array.shape), "datatype": spec.datatype, "data": array.ravel().tolist()}
               for spec, (name, array) in zip(contract.inputs, zero_inputs(contract).items(), strict=True)]  # fmt: skip
    return {"inputs": tensors}


def route_requests(name: str) -> list[tuple[str, str, str | None]]:
    """(method, path, JSON body or None) for each API Gateway route serverless.yml gives the function."""
    folder = ROOT / "functions" / ZIPS[name]
    requests = []
    for event in FUNCTIONS[name]["events"]:
        if "http" not in event:
            continue
        method, path = event["http"]["method"].upper(), "/" + event["http"]["path"]
        model = path.split("/")[-2] if path.endswith(("/ready", "/infer", "/predict")) else path.split("/")[-1]
        contract = load_contract(folder / model if (folder / model / "modelfn.yaml").is_file() else folder)
        body = None
        if path.endswith("/predict"):
            # the contract's example, or its inputs by name (a model without hooks takes them so)
            body = json.dumps(contract.example or {k: v.tolist() for k, v in zero_inputs(contract).items()})
        elif path.endswith("/infer"):
            body = json.dumps(v2_request(contract))
        requests.append((method, path, body))
    return requests


def until_loaded(path: str, send: Callable[[], T], status: Callable[[T], int]) -> T:
    """``send()``'s answer; a readiness probe is sent again while it answers 503 (it started the load,
    and answers 503 until the model is in), for up to two minutes."""
    answer = send()
    deadline = time.monotonic() + 120
    while path.endswith("/ready") and status(answer) == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
        answer = send()
    return answer
