"""``/openapi.json``: built from the route table, and held to by a live server under schemathesis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import make_client
from credentials import add_key
from helpers import DIGITS, running

from modelfn.protocols import build_router
from modelfn.routing import expand_template


def test_every_route_is_documented_with_this_functions_models() -> None:
    document = make_client(DIGITS).get("/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    routes = build_router().routes
    expected = {(path, r.method.lower()) for r in routes for path in expand_template(r.template)}
    assert {(path, method) for path, item in document["paths"].items() for method in item} == expected
    infer = document["paths"]["/v2/models/{name}/versions/{version}/infer"]["post"]
    assert [p["schema"]["enum"] for p in infer["parameters"]] == [["digits"], ["1"]]
    assert set(infer["responses"]) == {"200", "400", "401", "403", "404", "405", "413", "415", "500", "503", "504"}
    assert document["paths"]["/v2/health/live"]["get"]["security"] == []  # probes send no credentials


def schemathesis(url: str, workdir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """A schemathesis run: every check but "any schema-valid body is accepted", which no model API can meet
    (a body can match the schema and still carry 63 pixels for a 64-pixel model). It runs in ``workdir``,
    where it keeps its cache (``.schemathesis/``), so a test run writes nothing into the checkout."""
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json",
        "--checks", "all", "--exclude-checks", "positive_data_acceptance",
        "--phases", "examples,coverage,fuzzing", "--max-examples", "60", "--seed", "20261123",
        "--request-timeout", "30", "--no-color", *options,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=workdir)


@pytest.mark.slow
def test_schemathesis_finds_no_5xx_and_no_schema_violation(tmp_path) -> None:
    with running(DIGITS, tmp_path / "serve.log") as server:
        run = schemathesis(server.url, tmp_path)
        assert run.returncode == 0, run.stdout[-6000:]
        assert " passed" in run.stdout and "failed" not in run.stdout.split("SUMMARY")[-1]
        assert requests.get(f"{server.url}/v2/health/live", timeout=5).status_code == 200
        log = server.log()
    assert "Traceback" not in log and "unhandled error" not in log


@pytest.mark.slow
def test_schemathesis_with_api_keys_finds_no_route_that_ignores_them(tmp_path) -> None:
    keys_file = tmp_path / "keys"
    key = add_key(keys_file, "fuzz", "digits")
    env = {"MODELFN_API_KEYS_FILE": str(keys_file)}
    with running(DIGITS, tmp_path / "serve.log", env) as server:
        assert requests.get(f"{server.url}/openapi.json", timeout=5).status_code == 401
        run = schemathesis(server.url, tmp_path, "--header", f"x-api-key: {key}", "--max-examples", "30")
        assert run.returncode == 0, run.stdout[-6000:]
        log = server.log()
    assert "Traceback" not in log and "unhandled error" not in log
