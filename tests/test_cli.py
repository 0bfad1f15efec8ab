"""`modelfn check` and `modelfn serve` as a user runs them."""

from __future__ import annotations

import subprocess
import sys

import requests
from helpers import DIGITS, copy_function, running


def modelfn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelfn", *args], capture_output=True, text=True, timeout=120)


def test_check_loads_and_runs_the_example() -> None:
    result = modelfn("check", str(DIGITS))
    assert result.returncode == 0, result.stderr
    assert "digits v1 (onnx)" in result.stdout and "sha256 verified" in result.stdout
    assert '"digit": 2' in result.stdout and result.stdout.rstrip().endswith("ok")


def test_check_names_the_file_and_field(tmp_path) -> None:
    folder = copy_function(tmp_path, version=3)
    result = modelfn("check", str(folder))
    assert result.returncode == 1
    assert f"{folder / 'modelfn.yaml'}: field `version`: expected `str`, got `int`" in result.stderr


def test_check_refuses_a_tampered_artifact(tmp_path) -> None:
    folder = copy_function(tmp_path)
    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes() + b"\0")
    result = modelfn("check", str(folder))
    assert result.returncode == 1 and "digest mismatch" in result.stderr


def test_serve_needs_an_entrypoint(tmp_path) -> None:
    folder = copy_function(tmp_path)
    (folder / "main.py").unlink()
    result = modelfn("serve", str(folder))
    assert result.returncode == 1 and "handle = http_function(__file__)" in result.stderr


def test_serve_answers_on_the_given_port(tmp_path) -> None:
    with running(DIGITS, tmp_path / "serve.log") as server:
        assert requests.get(f"{server.url}/v2", timeout=5).json()["name"] == "modelfn"


def test_registry_commands(tmp_path) -> None:
    registry = str(tmp_path / "registry")
    pushed = modelfn("push", str(DIGITS), "--registry", registry)
    assert pushed.returncode == 0 and "digits v1 pushed: sha256 ffbc6559" in pushed.stdout
    again = modelfn("push", str(DIGITS), "--registry", registry)
    assert "already present (identical bytes)" in again.stdout
    assert modelfn("versions", "digits", "--registry", registry).stdout.split() == ["1"]
    promoted = modelfn("promote", "digits", "1", "--alias", "prod", "--registry", registry)
    assert promoted.stdout.strip() == "digits@prod -> v1 (previous: none)"
    modelfn("promote", "digits", "1", "--alias", "canary", "--registry", registry)
    assert modelfn("versions", "digits", "--registry", registry).stdout.strip() == "1  (canary, prod)"
    missing = modelfn("promote", "digits", "9", "--alias", "prod", "--registry", registry)
    assert missing.returncode == 1 and "digits v9 is not in the registry" in missing.stderr
    refused = modelfn("rollback", "digits", "--alias", "prod", "--registry", registry)
    assert refused.returncode == 1 and "no previous version" in refused.stderr


def test_serve_needs_a_contract_here_or_in_sub_folders(tmp_path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "main.py").write_text("handle = None\n")
    result = modelfn("serve", str(folder))
    assert result.returncode == 1 and "no modelfn.yaml in" in result.stderr
