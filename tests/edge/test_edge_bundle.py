"""``modelfn build --target edge``: the runner answers as the function does, with onnxruntime and numpy only.

Each bundle runs in a virtual environment made here with nothing but ``onnxruntime`` and ``numpy``
(and what they pull in themselves), outside the repository, so neither modelfn's dependencies nor
its source can leak in. The held-out requests go to the runner's HTTP server and are compared with
the function's own answers (``POST /predict`` in-process).
"""

from __future__ import annotations

import ast
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from conftest import make_client
from helpers import DIGITS, HELPDESK, ROOT, LoggedProcess, free_port, poll_live

from modelfn.tooling.convert import DEFAULTS, ConversionRejected, Thresholds
from modelfn.tooling.edge_bundle import EDGE_MODULES, build_edge

pytestmark = pytest.mark.slow
CHURN = DIGITS.parent / "churn"
SRC = ROOT / "src" / "modelfn"


def test_the_runner_imports_only_the_modules_the_bundle_ships() -> None:
    shipped = {"modelfn." + m.removesuffix(".py").replace("/", ".").removesuffix(".__init__") for m in EDGE_MODULES}
    shipped = {name.removesuffix(".") for name in shipped} | {"modelfn"}
    needed = set()
    for module in EDGE_MODULES:
        package = "modelfn." + ".".join(Path(module).parent.parts) if Path(module).parent.parts else "modelfn"
        for node in ast.walk(ast.parse((SRC / module).read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                needed.add(f"{base}.{node.module}" if node.module else base)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modelfn"):
                needed.add(node.module)
            elif isinstance(node, ast.Import):
                needed |= {alias.name for alias in node.names if alias.name.startswith("modelfn")}
    assert needed <= shipped, sorted(needed - shipped)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """A virtual environment with onnxruntime and numpy (at the project's pinned versions), nothing else."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*install, "-c", str(ROOT / "packaging" / "constraints.txt"), "onnxruntime", "numpy"],
                   check=True, timeout=600, capture_output=True)  # fmt: skip
    return python


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("edge")
    return {folder.name: Path(build_edge(folder, out).output) for folder in (DIGITS, HELPDESK)}


def bare_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    return {name: os.environ[name] for name in keep if name in os.environ}


class EdgeServer(LoggedProcess):
    def __init__(self, python: Path, bundle: Path, log_path: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [str(python), "-m", "modelfn.edge", "serve", "--port", str(self.port), *extra]
        super().__init__(command, log_path, bare_env(), cwd=bundle)

    def __enter__(self) -> EdgeServer:
        def exited() -> None:
            if self.process.poll() is not None:
                raise RuntimeError(f"the edge runner exited with {self.process.returncode}:\n{self.log()}")

        if not poll_live(self.url, time.monotonic() + 60, exited):
            raise TimeoutError(f"the edge runner is not live after 60 s:\n{self.log()}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def test_the_bare_environment_has_no_modelfn_dependency(bare_python, bundles) -> None:
    probe = "import importlib.util as u; print([m for m in ('functions_framework', 'msgspec', 'yaml', 'orjson', " \
            "'click', 'gunicorn', 'PIL', 'modelfn') if u.find_spec(m)])"  # fmt: skip
    found = subprocess.run([str(bare_python), "-c", probe], capture_output=True, text=True, env=bare_env(), cwd="/")
    assert found.stdout.strip() == "[]", found.stderr
    info = subprocess.run([str(bare_python), "-m", "modelfn.edge", "info"], capture_output=True, text=True,
                          env=bare_env(), cwd=bundles["digits"], timeout=120)  # fmt: skip
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]
    config = (bundles["digits"] / "required_operators.config").read_text()
    assert "ai.onnx;13;ArgMax" in config and "Gemm" in config


@pytest.mark.parametrize("folder", [DIGITS, HELPDESK], ids=["digits", "helpdesk"])
def test_the_edge_runner_answers_the_held_out_set_as_the_function_does(
    bare_python, bundles, folder: Path, tmp_path
) -> None:
    bodies = [json.loads(line) for line in (folder / "heldout.jsonl").read_text().splitlines()]
    client = make_client(folder)
    expected = [client.post("/predict", json=body).get_json() for body in bodies]
    with EdgeServer(bare_python, bundles[folder.name], tmp_path / "edge.log") as server, requests.Session() as http:
        answers = [http.post(server.url + "/predict", json=body, timeout=30) for body in bodies]
    assert [a.status_code for a in answers] == [200] * len(bodies)
    answers = [a.json() for a in answers]
    if folder == DIGITS:
        assert [a["digit"] for a in answers] == [e["digit"] for e in expected]
        difference = np.abs(np.array([a["probabilities"] for a in answers]) - [e["probabilities"] for e in expected])
        assert difference.max() <= 1e-5
    else:
        for got, want in zip(answers, expected, strict=True):
            assert (got["intent"], got["answer"]) == (want["intent"], want["answer"])
            assert abs(got["confidence"] - want["confidence"]) <= 1e-4 + 1e-9


def test_predict_on_stdin_and_the_open_inference_protocol(bare_python, bundles, tmp_path) -> None:
    bundle = bundles["digits"]
    example = json.loads((DIGITS / "heldout.jsonl").read_text().splitlines()[0])

    def predict(body: bytes) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(bare_python), "-m", "modelfn.edge", "predict"], input=body.decode(),
                              capture_output=True, text=True, env=bare_env(), cwd=bundle, timeout=120)  # fmt: skip

    done = predict(json.dumps(example).encode())
    assert done.returncode == 0 and json.loads(done.stdout)["digit"] == 2
    refused = predict(b'{"image": [[1, 2]]}')
    assert refused.returncode == 1 and json.loads(refused.stderr.strip().splitlines()[-1])["status"] == 400
    assert predict(b"{not json").returncode == 1

    pixels = np.array(example["image"], dtype=np.float32).reshape(1, 64)
    tensor = {"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": pixels.ravel().tolist()}
    request = {"id": "r1", "inputs": [tensor]}
    ours = make_client(DIGITS).post("/v2/models/digits/infer", json=request).get_json()
    with EdgeServer(bare_python, bundle, tmp_path / "edge.log") as server:
        theirs = requests.post(server.url + "/v2/models/digits/infer", json=request, timeout=30).json()
        metadata = requests.get(server.url + "/v2/models/digits", timeout=30).json()
        assert requests.get(server.url + "/v2/health/ready", timeout=30).status_code == 200
    assert theirs["id"] == "r1" and theirs["model_name"] == "digits" and theirs["model_version"] == "1"
    by_name = {o["name"]: o for o in theirs["outputs"]}
    for output in ours["outputs"]:
        mine = by_name[output["name"]]
        assert (mine["datatype"], mine["shape"]) == (output["datatype"], output["shape"])
        assert np.allclose(mine["data"], output["data"], atol=1e-6)
    assert metadata["platform"] == "onnx_onnxv1" and metadata["versions"] == ["1"]


def _raw(port: int, data: bytes) -> tuple[int, dict[str, Any]]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < int(
            reply.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0] if b"Content-Length: " in reply else 0
        ):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def test_bad_requests_get_a_clear_json_error_and_a_slow_client_holds_up_no_one(bare_python, bundles, tmp_path) -> None:
    with EdgeServer(bare_python, bundles["digits"], tmp_path / "edge.log", "--max-body-bytes", "4096") as server:
        url = server.url
        cases = {
            "not json": requests.post(url + "/predict", data=b"{", timeout=30),
            "wrong shape": requests.post(url + "/predict", json={"image": [[1] * 8] * 7}, timeout=30),
            "over the limit": requests.post(url + "/predict", data=b" " * 5000, timeout=30),
            "unknown route": requests.post(url + "/nowhere", data=b"{}", timeout=30),
            "unknown model": requests.post(url + "/v2/models/other/infer", json={"inputs": []}, timeout=30),
            "no inputs": requests.post(url + "/v2/models/digits/infer", json={"inputs": []}, timeout=30),
        }
        statuses = {name: response.status_code for name, response in cases.items()}
        assert statuses == {"not json": 400, "wrong shape": 400, "over the limit": 413, "unknown route": 404,
                            "unknown model": 404, "no inputs": 400}  # fmt: skip
        assert all("error" in response.json() for response in cases.values())
        chunked = b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
        assert _raw(server.port, chunked)[0] == 411

        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as slow:
            slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")  # and then nothing
            started = time.monotonic()
            body = json.loads((DIGITS / "heldout.jsonl").read_text().splitlines()[0])
            answer = requests.post(url + "/predict", json=body, timeout=30)
            assert answer.status_code == 200 and time.monotonic() - started < 25  # not behind the slow one
        assert server.process.poll() is None


def test_int8_for_the_edge_is_verified_as_convert_verifies_it(bare_python, tmp_path) -> None:
    # How far int8 moves a probability depends on the CPU's integer kernels (0.16 on one machine of
    # this kind, 0.035 on one with VNNI): the error is measured here first, and the thresholds are set
    # on either side of it, so the verdicts hold on any CPU.
    measured = build_edge(DIGITS, tmp_path / "measure", quantize="int8", thresholds=Thresholds(1.0, 0.0)).quantization
    error = measured["outputs"]["probabilities"]["max_abs_diff"]
    agreement = measured["outputs"]["label"]["agreement"]
    assert 0 < error < 1 and 0.9 <= agreement <= 1  # int8 changes the probabilities, not the digits much
    tight = Thresholds(error / 2, 0.0)
    refusal = f"probabilities: max abs difference {error:.3g} > {tight.max_abs_diff}"
    with pytest.raises(ConversionRejected, match=re.escape(refusal)):
        build_edge(DIGITS, tmp_path / "strict", quantize="int8", thresholds=tight)
    assert not (tmp_path / "strict" / "digits-edge").exists()  # nothing written
    default = DEFAULTS["int8"]  # no thresholds given: convert's int8 defaults decide, as they do for convert
    if error > default.max_abs_diff:
        with pytest.raises(ConversionRejected, match=re.escape(f"> {default.max_abs_diff}")):
            build_edge(DIGITS, tmp_path / "default", quantize="int8")
    else:
        assert build_edge(DIGITS, tmp_path / "default", quantize="int8").quantization["outputs"] == measured["outputs"]
    report = build_edge(DIGITS, tmp_path / "loose", quantize="int8", thresholds=Thresholds(error * 1.01, agreement))
    quantization = report.quantization
    assert quantization["outputs"] == measured["outputs"]  # the same model and kernels: the same figures
    assert quantization["bytes"]["quantized"] < quantization["bytes"]["original"] / 2
    assert report.model_bytes < 25_040  # smaller than the float ORT model
    bodies = [json.loads(line) for line in (DIGITS / "heldout.jsonl").read_text().splitlines()]
    client = make_client(DIGITS)
    with EdgeServer(bare_python, Path(report.output), tmp_path / "edge.log") as server, requests.Session() as http:
        digits = [http.post(server.url + "/predict", json=body, timeout=30).json()["digit"] for body in bodies]
    expected = [client.post("/predict", json=body).get_json()["digit"] for body in bodies]
    # The runner serves the int8 model verified above: it agrees with the float function as the
    # verification measured (on the held-out requests, the validation rows as served).
    assert abs(np.mean(np.array(digits) == np.array(expected)) - agreement) <= 0.01


@pytest.fixture(scope="module")
def churn_bundle(tmp_path_factory) -> Path:
    """functions/churn converted to ONNX (one input per column), built for the edge."""
    out = tmp_path_factory.mktemp("churn-edge")
    converted = subprocess.run([sys.executable, "-m", "modelfn", "convert", str(CHURN), "--out", str(out / "onnx")],
                               capture_output=True, text=True, timeout=600)  # fmt: skip
    assert converted.returncode == 0, converted.stderr
    return Path(build_edge(out / "onnx", out).output)


def test_a_converted_table_takes_rows_and_columns_on_the_edge_as_the_function_does(
    bare_python, churn_bundle, tmp_path
) -> None:
    import csv

    with (CHURN / "validation.csv").open() as file:
        cells = list(csv.DictReader(file))[:200]
    rows = [{"tenure": int(r["tenure"]), "plan": r["plan"], "contract": r["contract"],
             "monthly": float(r["monthly"]) if r["monthly"] else None} for r in cells]  # fmt: skip
    assert any(row["monthly"] is None for row in rows)
    expected = make_client(CHURN).post("/predict", json={"rows": rows}).get_json()  # the pipeline as trained
    columns = [{"name": name, "datatype": datatype, "shape": [2, 1], "data": [rows[0][name], rows[1][name]]}
               for name, datatype in (("tenure", "INT64"), ("plan", "BYTES"), ("contract", "BYTES"),
                                      ("monthly", "FP64"))]  # fmt: skip
    with EdgeServer(bare_python, churn_bundle, tmp_path / "edge.log") as server, requests.Session() as http:
        answer = http.post(server.url + "/predict", json={"rows": rows}, timeout=30)
        one = http.post(server.url + "/predict", json=rows[0], timeout=30)
        oip = http.post(server.url + "/v2/models/churn/infer", json={"parameters": {"content_type": "pd"},
                                                                       "inputs": columns}, timeout=30)  # fmt: skip
        unknown = http.post(server.url + "/predict", json={**rows[0], "plan": "gold"}, timeout=30)
        wrong = http.post(server.url + "/predict", json={**rows[0], "tenure": "twelve"}, timeout=30)
        missing = http.post(server.url + "/predict", json={"plan": "pro"}, timeout=30)
    assert (answer.status_code, one.status_code, oip.status_code) == (200, 200, 200), (answer.text, oip.text)
    assert answer.json()["label"] == expected["label"]
    assert np.abs(np.array(answer.json()["probabilities"]) - expected["probabilities"]).max() <= 1e-5
    assert one.json()["label"] == expected["label"][:1]
    by_name = {output["name"]: output for output in oip.json()["outputs"]}
    assert by_name["label"]["data"] == expected["label"][:2]
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "column 'plan': unknown category 'gold'; the model knows 'basic', 'family', 'pro'"
    assert wrong.status_code == 400 and "column 'tenure'" in wrong.json()["error"]
    assert missing.status_code == 400 and "column 'tenure': missing" in missing.json()["error"]
