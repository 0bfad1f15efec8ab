"""serverless.yml served by serverless-offline (under osls): API Gateway's routes, keys and usage plan, emulated.

The generated file, with ``plugins: [serverless-offline]`` added and its zip functions' folders on
each one's ``PYTHONPATH`` (serverless-offline's Python runner imports the handler from there rather
than from the zip), is started by the test with the zips it references. Every route of every zip
function must answer 200 with the usage plan's key and 403 without it. The image functions (Lambda
container images) are left out: serverless-offline runs no images. Models come from a registry on
moto's S3, as ``MODELFN_MODEL`` says.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from helpers import ROOT, free_port
from infra_tools import tool
from lambda_deploy import HTTP, ZIPS, environment_of, route_requests, until_loaded

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def offline(tmp_path_factory, lambda_tasks, aws_registry) -> Iterator[dict[str, Any]]:
    project = tmp_path_factory.mktemp("offline")
    config = yaml.safe_load((ROOT / "serverless.yml").read_text())
    config["plugins"] = ["serverless-offline"]
    config["functions"] = {name: spec for name, spec in config["functions"].items() if name in ZIPS}
    for name, spec in config["functions"].items():
        spec["environment"] = {**environment_of(name, aws_registry), "PYTHONPATH": str(lambda_tasks[ZIPS[name]])}
    (project / "serverless.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (project / "dist").mkdir()
    for folder in set(ZIPS.values()):
        shutil.copy(lambda_tasks[folder].parent / f"{folder}-lambda.zip", project / "dist")
    sls = Path(tool("sls"))
    (project / "node_modules").symlink_to(sls.parent.parent)  # the plugin resolves from the project
    port = free_port()
    env = {**os.environ, "HOME": str(project), "SLS_TELEMETRY_DISABLED": "1", "SLS_NOTIFICATIONS_MODE": "off"}
    log_path = project / "offline.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(sls), "offline", "start", "--stage", "test", "--host", "127.0.0.1", "--httpPort", str(port),
             "--lambdaPort", str(free_port()), "--noPrependStageInUrl", f"--param=bucket={aws_registry['registry']}"],
            cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while "Server ready" not in log_path.read_text(errors="replace"):
                assert process.poll() is None and time.monotonic() < deadline, log_path.read_text(errors="replace")
                time.sleep(0.2)
            key = re.search(r"Key with token: '([^']+)'", log_path.read_text(errors="replace"))
            assert key is not None, log_path.read_text(errors="replace")
            yield {"url": f"http://127.0.0.1:{port}", "key": key[1], "log": log_path}
        finally:
            os.killpg(process.pid, 15)  # osls and the Python runners it started
            process.wait(30)


@pytest.mark.parametrize("name", HTTP)
def test_every_route_answers_with_the_usage_plan_key_and_is_refused_without(offline, name) -> None:
    for method, path, body in route_requests(name):
        url = offline["url"] + path
        headers = {"Content-Type": "application/json"}
        refused = requests.request(method, url, data=body, headers=headers, timeout=120)
        assert refused.status_code == 403, (method, path, refused.status_code, refused.text)
        headers["x-api-key"] = offline["key"]
        send = functools.partial(requests.request, method, url, data=body, headers=dict(headers), timeout=300)
        answer = until_loaded(path, send, lambda a: a.status_code)
        log = offline["log"].read_text(errors="replace")[-3000:]
        assert answer.status_code == 200, (method, path, answer.text, log)
        wrong = requests.request(method, url, data=body, headers={**headers, "x-api-key": "not-the-key"}, timeout=120)
        assert wrong.status_code == 403, (method, path, wrong.status_code)
