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
import functools
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import requests
from alexa_pki import SKILL_ID, envelope
from helpers import ROOT, LoggedProcess, free_port
from lambda_deploy import FUNCTIONS, HTTP, ZIPS, environment_of, route_requests, until_loaded
from test_aws_lambda import http_event, rest_event
from test_aws_lambda_events import IMAGE, csv_of, get, put, sqs_batch

pytestmark = pytest.mark.slow
LAMBDA = ROOT / ".tools" / "lambda"


class Emulator(LoggedProcess):
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
        super().__init__(command, log, env, cwd=task)
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


@contextlib.contextmanager
def emulated(name: str, task: Path, registry: dict[str, str], log: Path, **extra: str) -> Iterator[Emulator]:
    """The function ``name`` of serverless.yml with its environment, ``${param:bucket}`` the test's bucket."""
    emulator = Emulator(task, name, {**environment_of(name, registry), **extra}, log)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.mark.parametrize("name", HTTP)
def test_every_route_of_every_http_zip_function_answers(name, lambda_tasks, aws_registry, tmp_path) -> None:
    """Each API Gateway route serverless.yml gives the function, as a REST API (payload 1.0) event."""
    with emulated(name, lambda_tasks[ZIPS[name]], aws_registry, tmp_path / "rie.log") as emulator:
        for method, path, body in route_requests(name):
            event = rest_event(method, path, body, {"Content-Type": "application/json"} if body else None)
            answer = until_loaded(path, functools.partial(emulator.invoke, event), lambda a: a["statusCode"])
            assert answer["statusCode"] == 200, (method, path, answer, emulator.log())


def test_the_http_function_answers_api_gateway_rest_and_http_api_events(lambda_tasks, aws_registry, tmp_path) -> None:
    routes = {(e["http"]["method"].upper(), "/" + e["http"]["path"]) for e in FUNCTIONS["digits"]["events"]}
    assert ("POST", "/models/digits/predict") in routes and ("POST", "/v2/models/digits/infer") in routes
    body = json.dumps({"image": IMAGE})
    with emulated("digits", lambda_tasks[ZIPS["digits"]], aws_registry, tmp_path / "rie.log") as emulator:
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


def test_the_batch_function_predicts_an_uploaded_file(lambda_tasks, aws_registry, heldout, tmp_path) -> None:
    x, y = heldout
    record = put(aws_registry["uploads"], "incoming/held out.csv", csv_of(x[:120]))
    with emulated("digits-batch", lambda_tasks[ZIPS["digits"]], aws_registry, tmp_path / "rie.log") as emulator:
        result = emulator.invoke({"Records": [record]})
    assert [outcome["predicted"] for outcome in result["batch"]] == [120], result
    stored = get(aws_registry["results"], "digits-batch/predictions/held out.csv.predictions.jsonl")
    assert stored is not None
    labels = [orjson.loads(line)["prediction"]["label"] for line in stored.splitlines()]
    assert len(labels) == 120 and np.mean(np.array(labels) == y[:120]) > 0.95


def test_the_sqs_function_answers_a_batch_and_reports_the_messages_it_could_not(
    lambda_tasks, aws_registry, tmp_path
) -> None:
    good, bad = json.dumps({"image": IMAGE}), "{not json"
    batch = sqs_batch([good, bad])
    with emulated("digits-messages", lambda_tasks[ZIPS["digits"]], aws_registry, tmp_path / "rie.log") as emulator:
        assert emulator.invoke(batch) == {"batchItemFailures": []}  # a bad request is answered, not retried
    answers = {r["body"]: json.loads(get(aws_registry["results"], f"digits-messages/messages/{r['messageId']}.json"))
               for r in batch["Records"]}  # fmt: skip
    assert answers[good]["result"]["digit"] in range(10) and "not valid JSON" in answers[bad]["error"]
    # With S3 gone (the model's registry and the answers' store), every message must come back.
    again = sqs_batch([good, good])
    dead = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "MODELFN_LOAD_WAIT_S": "1"}
    with emulated(
        "digits-messages", lambda_tasks[ZIPS["digits"]], aws_registry, tmp_path / "dead.log", **dead
    ) as emulator:
        result = emulator.invoke(again)
    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == sorted(
        r["messageId"] for r in again["Records"]
    ), result


def test_an_alexa_skill_invokes_the_helpdesk_function_directly(lambda_tasks, aws_registry, tmp_path) -> None:
    with emulated("helpdesk", lambda_tasks[ZIPS["helpdesk"]], aws_registry, tmp_path / "rie.log",
                  MODELFN_ALEXA_SKILL_IDS=SKILL_ID) as emulator:  # fmt: skip
        answer = emulator.invoke(envelope(slots={"question": "how do I install modelfn"}))
        assert answer["response"]["card"]["content"].startswith("You need Python 3.11 or newer"), answer
        refused = emulator.invoke(envelope(skill_id="amzn1.ask.skill.other"))
    assert refused["errorType"] == "VerificationFailed" and "does not serve" in refused["errorMessage"]
