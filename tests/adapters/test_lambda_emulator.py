"""The built Lambda zips under the official Lambda Runtime Interface Emulator, as serverless.yml deploys them.

Each function of the generated ``serverless.yml`` that ships a zip runs as Lambda runs it: the zip
unpacked into ``LAMBDA_TASK_ROOT``, the handler started by ``awslambdaric`` (the runtime client
Lambda's Python images use) under ``aws-lambda-rie``, with nothing on the path but the zip and what
Lambda's runtime brings (``awslambdaric``, ``boto3``), the function's own environment from
``serverless.yml``, and its models pushed to a registry on moto's S3. ``make tools`` fetches the
emulator (from the aws-sam-cli wheel) and the runtime's packages.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import orjson
import pytest
import requests
import yaml
from alexa_pki import SKILL_ID, envelope
from emulators import new_bucket
from helpers import ROOT, free_port
from test_aws_lambda import http_event, rest_event
from test_aws_lambda_events import IMAGE, csv_of, get, put, sqs_batch

from modelfn.contract import Contract, load_contract
from modelfn.runtime.model import zero_inputs
from modelfn.tooling.build import build

pytestmark = pytest.mark.slow
LAMBDA = ROOT / ".tools" / "lambda"
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
FUNCTIONS = yaml.safe_load((ROOT / "serverless.yml").read_text())["functions"]


class Emulator:
    """``aws-lambda-rie`` running one function's handler; :meth:`invoke` posts an event as Lambda's Invoke API."""

    def __init__(self, task: Path, name: str, environment: dict[str, str], log: Path) -> None:
        rie = LAMBDA / "aws-lambda-rie"
        if not rie.is_file():
            pytest.fail("the Lambda emulator is not installed: `make tools` fetches it into .tools/lambda")
        self.port = free_port()
        spec = FUNCTIONS[name]
        env = {
            "PATH": os.environ["PATH"],
            "LAMBDA_TASK_ROOT": str(task),
            # -S below: no site-packages; the zip and Lambda's own runtime packages are all there is.
            "PYTHONPATH": f"{task}:{LAMBDA / 'runtime'}",
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec["memorySize"]),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec["timeout"]),
            **{key: value for key, value in os.environ.items() if key.startswith("AWS_")},
            **environment,
        }
        command = [str(rie), "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}",
                   "--runtime-api-address", f"127.0.0.1:{free_port()}",
                   sys.executable, "-S", "-m", "awslambdaric", spec["handler"]]  # fmt: skip
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, cwd=task, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                break
            assert self.process.poll() is None and time.monotonic() < deadline, self.log()
            time.sleep(0.05)

    def invoke(self, event: dict[str, Any]) -> Any:
        url = f"http://127.0.0.1:{self.port}/2015-03-31/functions/function/invocations"
        answer = requests.post(url, data=json.dumps(event), timeout=300)
        assert answer.status_code == 200, (answer.text, self.log())
        return answer.json()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


#: serverless.yml's zip functions: name -> the function folder its artifact is built from.
ZIPS = {name: Path(spec["package"]["artifact"]).name.removesuffix("-lambda.zip")
        for name, spec in FUNCTIONS.items() if "package" in spec}  # fmt: skip


@pytest.fixture(scope="module")
def buckets(emulators) -> dict[str, str]:
    """The registry bucket and its -uploads and -results siblings, as serverless.yml names them, with
    every model a function's ``MODELFN_MODEL`` names pushed and aliased there."""
    bucket = new_bucket("s3")
    s3 = boto3.client("s3")
    for suffix in ("-uploads", "-results"):
        s3.create_bucket(Bucket=bucket + suffix)
    models = {spec["environment"]["MODELFN_MODEL"].rsplit("/", 1)[1] for spec in FUNCTIONS.values()
              if "package" in spec and "MODELFN_MODEL" in spec.get("environment", {})}  # fmt: skip
    for reference in sorted(models):
        name, alias = reference.split("@")
        folder = ROOT / "functions" / name
        version = str(yaml.safe_load((folder / "modelfn.yaml").read_text())["version"])
        for args in (["push", str(folder)], ["promote", name, version, "--alias", alias]):
            done = subprocess.run([sys.executable, "-m", "modelfn", *args, "--registry", f"s3://{bucket}/models"],
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
            assert done.returncode == 0, done.stderr
    return {"registry": bucket, "uploads": bucket + "-uploads", "results": bucket + "-results"}


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> dict[str, Path]:
    """Each zip serverless.yml deploys, built for this interpreter and unpacked as Lambda unpacks it."""
    out = tmp_path_factory.mktemp("dist")
    unpacked = {}
    for folder in sorted(set(ZIPS.values())):
        report = build(ROOT / "functions" / folder, "lambda", out, python=PYTHON)
        task = out / f"{folder}-task"
        with zipfile.ZipFile(report.output) as archive:
            archive.extractall(task)
        unpacked[folder] = task
    return unpacked


@contextlib.contextmanager
def emulated(name: str, task: Path, buckets: dict[str, str], log: Path, **extra: str) -> Iterator[Emulator]:
    """The function ``name`` of serverless.yml with its environment, ``${param:bucket}`` the test's bucket."""
    environment = {key: str(value).replace("${param:bucket}", buckets["registry"])
                   for key, value in FUNCTIONS[name].get("environment", {}).items()}  # fmt: skip
    emulator = Emulator(task, name, {**environment, **extra}, log)
    try:
        yield emulator
    finally:
        emulator.stop()


def v2_request(contract: Contract) -> dict[str, Any]:
    """An OIP request of zeros of the declared shapes (empty strings for BYTES), as the warm-up sends."""
    tensors = [{"name": name, "shape": list(array.shape), "datatype": spec.datatype, "data": array.ravel().tolist()}
               for spec, (name, array) in zip(contract.inputs, zero_inputs(contract).items(), strict=True)]  # fmt: skip
    return {"inputs": tensors}


HTTP = [name for name in ZIPS if any("http" in event for event in FUNCTIONS[name].get("events", []))]


@pytest.mark.parametrize("name", HTTP)
def test_every_route_of_every_http_zip_function_answers(name, tasks, buckets, tmp_path) -> None:
    """Each API Gateway route serverless.yml gives the function, as a REST API (payload 1.0) event."""
    with emulated(name, tasks[ZIPS[name]], buckets, tmp_path / "rie.log") as emulator:
        for event in FUNCTIONS[name]["events"]:
            method, path = event["http"]["method"].upper(), "/" + event["http"]["path"]
            model = path.split("/")[-2] if path.endswith(("/ready", "/infer", "/predict")) else path.split("/")[-1]
            folder = ROOT / "functions" / ZIPS[name]
            contract = load_contract(folder / model if (folder / model / "modelfn.yaml").is_file() else folder)
            body = None
            if path.endswith("/predict"):
                # the contract's example, or its inputs by name (a model without hooks takes them so)
                example = contract.example or {k: v.tolist() for k, v in zero_inputs(contract).items()}
                body = json.dumps(example)
            elif path.endswith("/infer"):
                body = json.dumps(v2_request(contract))
            headers = {"Content-Type": "application/json"} if body else None
            answer = emulator.invoke(rest_event(method, path, body, headers))
            deadline = time.monotonic() + 120
            while path.endswith("/ready") and answer["statusCode"] == 503 and time.monotonic() < deadline:
                time.sleep(0.1)  # the probe started the load; it answers 503 until the model is in
                answer = emulator.invoke(rest_event(method, path, body, headers))
            assert answer["statusCode"] == 200, (method, path, answer, emulator.log())


def test_the_http_function_answers_api_gateway_rest_and_http_api_events(tasks, buckets, tmp_path) -> None:
    routes = {(e["http"]["method"].upper(), "/" + e["http"]["path"]) for e in FUNCTIONS["digits"]["events"]}
    assert ("POST", "/models/digits/predict") in routes and ("POST", "/v2/models/digits/infer") in routes
    body = json.dumps({"image": IMAGE})
    with emulated("digits", tasks[ZIPS["digits"]], buckets, tmp_path / "rie.log") as emulator:
        rest = emulator.invoke(rest_event("POST", "/models/digits/predict", body, {"Content-Type": "application/json"}))
        assert rest["statusCode"] == 200, rest
        assert json.loads(rest["body"])["digit"] in range(10)
        tensor = {"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": np.ravel(IMAGE).tolist()}
        v2 = emulator.invoke(http_event("POST", "/v2/models/digits/infer", json.dumps({"inputs": [tensor]})))
        assert v2["statusCode"] == 200, v2
        answer = json.loads(v2["body"])
        assert answer["model_version"] == "1"  # from the registry's prod alias, as MODELFN_MODEL says
        assert {o["name"] for o in answer["outputs"]} == {"probabilities", "label"}
        ready = emulator.invoke(rest_event("GET", "/v2/models/digits/ready"))
        assert ready["statusCode"] == 200 and json.loads(ready["body"])["ready"] is True
        bad = emulator.invoke(rest_event("POST", "/models/digits/predict", "{not json"))
        assert bad["statusCode"] == 400 and "not valid JSON" in json.loads(bad["body"])["error"]


def test_the_batch_function_predicts_an_uploaded_file(tasks, buckets, heldout, tmp_path) -> None:
    x, y = heldout
    record = put(buckets["uploads"], "incoming/held out.csv", csv_of(x[:120]))
    with emulated("digits-batch", tasks[ZIPS["digits"]], buckets, tmp_path / "rie.log") as emulator:
        result = emulator.invoke({"Records": [record]})
    assert [outcome["predicted"] for outcome in result["batch"]] == [120], result
    stored = get(buckets["results"], "digits-batch/predictions/held out.csv.predictions.jsonl")
    assert stored is not None
    labels = [orjson.loads(line)["prediction"]["label"] for line in stored.splitlines()]
    assert len(labels) == 120 and np.mean(np.array(labels) == y[:120]) > 0.95


def test_the_sqs_function_answers_a_batch_and_reports_the_messages_it_could_not(tasks, buckets, tmp_path) -> None:
    good, bad = json.dumps({"image": IMAGE}), "{not json"
    batch = sqs_batch([good, bad])
    with emulated("digits-messages", tasks[ZIPS["digits"]], buckets, tmp_path / "rie.log") as emulator:
        assert emulator.invoke(batch) == {"batchItemFailures": []}  # a bad request is answered, not retried
    answers = {r["body"]: json.loads(get(buckets["results"], f"digits-messages/messages/{r['messageId']}.json"))
               for r in batch["Records"]}  # fmt: skip
    assert answers[good]["result"]["digit"] in range(10) and "not valid JSON" in answers[bad]["error"]
    # With S3 gone (the model's registry and the answers' store), every message must come back.
    again = sqs_batch([good, good])
    dead = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "MODELFN_LOAD_WAIT_S": "1"}
    with emulated("digits-messages", tasks[ZIPS["digits"]], buckets, tmp_path / "dead.log", **dead) as emulator:
        result = emulator.invoke(again)
    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == sorted(
        r["messageId"] for r in again["Records"]
    ), result


def test_an_alexa_skill_invokes_the_helpdesk_function_directly(tasks, buckets, tmp_path) -> None:
    with emulated("helpdesk", tasks[ZIPS["helpdesk"]], buckets, tmp_path / "rie.log",
                  MODELFN_ALEXA_SKILL_IDS=SKILL_ID) as emulator:  # fmt: skip
        answer = emulator.invoke(envelope(slots={"question": "how do I install modelfn"}))
        assert answer["response"]["card"]["content"].startswith("You need Python 3.11 or newer"), answer
        refused = emulator.invoke(envelope(skill_id="amzn1.ask.skill.other"))
    assert refused["errorType"] == "VerificationFailed" and "does not serve" in refused["errorMessage"]
