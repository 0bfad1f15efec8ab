"""A storage event's large file is handed to the Beam pipeline; a small one is predicted in the function.

The ``local`` hand-off runs through a real functions-framework server (the engines' interpreter, which
has Beam) with the objects in the GCS emulator. The ``dataflow`` launch is checked against a stand-in
HTTP server recording the request: Dataflow has no local emulator, so only the request it would get
(and what is done with its answers) can be tested here.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import orjson
import pytest
from batch_cases import batch_here, results_of
from engines_env import engines_python
from helpers import DIGITS, copy_function
from storage_events import binary_event, ff_server, read, upload

from modelfn.errors import ModelNotReady
from modelfn.protocols.handoff import Handoff, job_name
from modelfn.runtime.stores import open_store
from modelfn.settings import Settings

pytestmark = pytest.mark.slow

THRESHOLD = 50_000  # bytes: the held-out set as JSON Lines (84 KB) is handed off, ten lines are not


@pytest.fixture(scope="module")
def bucket(emulators) -> str:
    from emulators import new_bucket

    return new_bucket("gs")


@pytest.fixture(scope="module")
def server(emulators, bucket, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("handoff")
    folder = copy_function(tmp, DIGITS)
    env = {
        "MODELFN_BATCH_OUTPUT": f"gs://{bucket}/predictions",
        "MODELFN_BATCH_HANDOFF": "local",
        "MODELFN_BATCH_HANDOFF_BYTES": str(THRESHOLD),
        "MODELFN_CACHE_DIR": str(tmp / "cache"),
    }
    with ff_server(folder, tmp / "ff.log", env, python=engines_python()) as url:
        yield {"url": url, "log": tmp / "ff.log", "jobs": tmp / "cache" / "handoff"}


def wait_for(bucket: str, name: str, deadline_s: float = 600) -> bytes:
    deadline = time.monotonic() + deadline_s
    while (data := read(bucket, name)) is None:
        assert time.monotonic() < deadline, f"{name} never appeared"
        time.sleep(0.5)
    return data


def test_a_large_file_is_handed_to_the_pipeline_which_writes_the_functions_files(server, bucket, tmp_path) -> None:
    lines = (DIGITS / "heldout.jsonl").read_text().splitlines()
    lines[10:10] = ['{"image": "nope"}']
    data = ("\n".join(lines) + "\n").encode()
    assert len(data) > THRESHOLD
    event = upload(bucket, "incoming/night/users.jsonl", data)
    assert binary_event(server["url"], event).status_code == 200
    summary = json.loads(wait_for(bucket, "predictions/night/users.jsonl.summary.json"))
    assert (summary["rows"], summary["predicted"], summary["failed"]) == (361, 360, 1)
    assert summary["generation"] == event["generation"]

    (tmp_path / "users.jsonl").write_bytes(data)  # the same file, predicted on one machine
    batch_here(str(DIGITS), str(tmp_path / "users.jsonl"), "--output", str(tmp_path / "here"))
    for kind in ("predictions", "errors"):
        (tmp_path / f"users.jsonl.{kind}.jsonl").write_bytes(
            wait_for(bucket, f"predictions/night/users.jsonl.{kind}.jsonl")
        )
    assert results_of(tmp_path, "users.jsonl") == results_of(tmp_path / "here", "users.jsonl")

    claim = read(bucket, "predictions/night/users.jsonl.handoff.json")
    assert binary_event(server["url"], event).status_code == 200  # delivered again: nothing launched
    assert read(bucket, "predictions/night/users.jsonl.handoff.json") == claim
    assert len(list(server["jobs"].glob("*.log"))) == 1


def test_a_small_file_is_predicted_in_the_function(server, bucket) -> None:
    lines = (DIGITS / "heldout.jsonl").read_text().splitlines()[:10]
    event = upload(bucket, "incoming/small.jsonl", ("\n".join(lines) + "\n").encode())
    assert binary_event(server["url"], event).status_code == 200
    summary = json.loads(wait_for(bucket, "predictions/small.jsonl.summary.json", 60))
    assert summary["predicted"] == 10
    assert read(bucket, "predictions/small.jsonl.handoff.json") is None


class StandIn(BaseHTTPRequestHandler):
    """Records each request; answers with the next status of ``statuses`` (Dataflow's job on 200)."""

    requests: ClassVar[list[tuple[str, dict]]] = []
    statuses: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        StandIn.requests.append((self.path, body))
        status = StandIn.statuses.pop(0) if StandIn.statuses else 200
        answer = {"job": {"id": "2026-12-02_01_00_00-123"}} if status == 200 else {"error": {"code": status}}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def dataflow():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    StandIn.requests, StandIn.statuses = [], []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def launch(handoff: Handoff, output: Path, generation: str = "7") -> dict:
    return handoff.launch(source="gs://b/incoming/users.csv", name="users.csv", generation=generation,
                          model="digits", version="1", output=open_store(str(output)),
                          reference="gs://b/models/digits/1")  # fmt: skip


def test_the_dataflow_launch_is_one_flex_template_request_per_input_generation(dataflow, tmp_path) -> None:
    environment = {"serviceAccountEmail": "mfn-digits-dataflow@p.iam.gserviceaccount.com", "maxWorkers": 20}
    settings = Settings(batch_handoff="dataflow", dataflow_template="gs://b/templates/digits.json",
                        dataflow_project="p", dataflow_region="europe-west1", dataflow_endpoint=dataflow,
                        dataflow_environment=json.dumps(environment))  # fmt: skip
    handoff = Handoff(settings)
    assert launch(handoff, tmp_path)["handed_off"] == "2026-12-02_01_00_00-123"
    ((path, body),) = StandIn.requests
    assert path == "/v1b3/projects/p/locations/europe-west1/flexTemplates:launch"
    assert body == {"launchParameter": {
        "jobName": job_name("digits", "gs://b/incoming/users.csv", "7", "1"),
        "containerSpecGcsPath": "gs://b/templates/digits.json",
        "parameters": {"input": "gs://b/incoming/users.csv", "output": f"file://{tmp_path}", "name": "users.csv",
                       "model": "gs://b/models/digits/1"},
        "environment": environment,
    }}  # fmt: skip
    assert launch(handoff, tmp_path)["duplicate"] is True  # the same generation again: no second request
    assert len(StandIn.requests) == 1
    StandIn.statuses = [409]  # a new generation whose job name a racing delivery already launched
    assert launch(handoff, tmp_path, generation="8")["handed_off"].startswith("modelfn-digits-")


def test_a_failed_launch_is_retried_by_the_next_delivery(dataflow, tmp_path) -> None:
    settings = Settings(batch_handoff="dataflow", dataflow_template="gs://b/t.json", dataflow_project="p",
                        dataflow_region="r", dataflow_endpoint=dataflow)  # fmt: skip
    StandIn.statuses = [503]
    with pytest.raises(ModelNotReady, match="could not be launched"):
        launch(Handoff(settings), tmp_path)
    assert orjson.loads((tmp_path / "users.csv.handoff.json").read_bytes())["failed"].startswith(
        "Dataflow answered 503"
    )
    assert launch(Handoff(settings), tmp_path)["handed_off"] == "2026-12-02_01_00_00-123"
    assert len(StandIn.requests) == 2
