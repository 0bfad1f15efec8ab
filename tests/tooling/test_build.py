"""``modelfn build``: real bundles, resolved by pip, then run from a clean interpreter or virtual environment.

Bundles are built for this interpreter's Python version (the default is the platforms' 3.12), so
the tests can load the native wheels they contain.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests
from batch_cases import batch_here
from engines_env import run_engine
from helpers import DIGITS, ROOT, free_port

from modelfn.tooling.build import MB, BuildError, BuildReport, FunctionLayout, build, requirement_names

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
ENSEMBLE = ROOT / "functions" / "digits-ensemble"
KERAS = ROOT / "functions" / "digits-keras"
FRAMEWORK_PACKAGES = ("tensorflow", "keras", "sklearn", "scikit_learn", "skops", "scipy")


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One output folder for the module, so the downloaded wheels are shared."""
    return tmp_path_factory.mktemp("dist")


def names(pins: list[str]) -> set[str]:
    return {pin.split("==")[0] for pin in pins}


def test_requirements_carry_only_what_the_contracts_need() -> None:
    digits = FunctionLayout.read(DIGITS)
    assert requirement_names(digits, "gcf") == [
        "msgspec",
        "pyyaml",
        "orjson",
        "prometheus-client",
        "functions-framework",
        "onnxruntime",
        "numpy",
        "python-multipart",  # its contract takes photos (uploads:), which its hook decodes with Pillow
        "pillow",
    ]
    assert "python-multipart" not in requirement_names(FunctionLayout.read(KERAS), "gcf")  # JSON only
    assert "functions-framework" not in requirement_names(digits, "lambda")  # Lambda calls the handler itself
    assert "boto3" not in requirement_names(digits, "lambda", stores=["s3"])  # the Lambda runtime has it
    assert "google-cloud-storage" in requirement_names(digits, "gcf", stores=["gcs"])
    # deploy.grpc: its Cloud Run image also serves gRPC (MODELFN_SERVE=grpc); zips do not carry it.
    assert {"grpcio", "protobuf"} <= set(requirement_names(digits, "cloudrun"))
    assert "grpcio" not in requirement_names(digits, "gcf") + requirement_names(FunctionLayout.read(KERAS), "cloudrun")
    keras = requirement_names(FunctionLayout.read(KERAS), "gcf")
    assert "tensorflow-cpu" in keras and "onnxruntime" not in keras
    cancer = requirement_names(FunctionLayout.read(ROOT / "functions" / "cancer"), "gcf")
    assert {"scikit-learn", "skops"} <= set(cancer) and "tensorflow-cpu" not in cancer


def test_a_group_is_read_from_its_sub_folders() -> None:
    layout = FunctionLayout.read(ENSEMBLE)
    assert layout.is_group and sorted(layout.models) == ["ensemble", "logreg", "mlp", "pca"]
    assert layout.frameworks() == {"onnx", "pipeline"}


def test_a_lambda_zip_over_the_upload_limit_is_reported_not_refused() -> None:
    """50 MB is the direct upload limit; from S3 a zip may be larger. 250 MB unzipped is the platform's."""
    limits = {"zipped": 50 * MB, "unzipped": 250 * MB}
    report = BuildReport("f", "lambda", "3.12", "f.zip", [], {"zipped": 60 * MB, "unzipped": 200 * MB}, limits)
    assert report.over() == [] and report.over(refused=False) == ["zipped"]
    assert "over the direct upload limit, upload it to S3" in report.lines()[1]
    report.sizes["unzipped"] = 260 * MB
    assert report.over() == ["unzipped"]


def test_build_verifies_once_and_a_cold_start_trusts_it_only_when_asked(function_copy, caplog) -> None:
    from modelfn.contract import load_contract
    from modelfn.runtime.model import load_model, local_artifact
    from modelfn.settings import Settings
    from modelfn.tooling.build import record_verification

    folder = function_copy(deploy={"verify": "build"})
    contract = load_contract(folder)
    record_verification(folder, contract)
    load = lambda: load_model(folder, contract, Settings(), *local_artifact(contract, folder))  # noqa: E731
    assert next(iter(load().phases)) == "fetch(local, verified at build)"
    entry = {"sha256": contract.verified_artifact().sha256, "size": 1}
    (folder / ".modelfn" / "verified.json").write_text(json.dumps({"files": {"model.onnx": entry}}))
    assert next(iter(load().phases)) == "fetch(local)"  # another size: not the file that was built, so hashed
    (folder / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(BuildError, match="do not match the sha256"):
        record_verification(folder, contract)


def test_a_folder_without_a_contract_is_refused(tmp_path) -> None:
    with pytest.raises(BuildError, match=r"no modelfn\.yaml"):
        build(tmp_path, "gcf", tmp_path / "dist")
    with pytest.raises(BuildError, match="unknown target 'heroku'"):
        build(DIGITS, "heroku", tmp_path / "dist")


@pytest.mark.slow
def test_the_lambda_zip_answers_from_a_bare_interpreter(out, tmp_path) -> None:
    """Unzipped into an empty folder and imported with no site-packages at all: the zip is complete."""
    report = build(DIGITS, "lambda", out, python=PYTHON)
    archive = Path(report.output)
    with zipfile.ZipFile(archive) as bundle:
        listed = bundle.namelist()
        bundle.extractall(tmp_path / "task")
    assert {"lambda_function.py", "modelfn.yaml", "model.onnx", "hooks.py", ".modelfn/contract.json"} <= set(listed)
    assert "train.py" not in listed  # not imported by the hooks: stays out
    assert not any(name.startswith(("modelfn/tooling/", "modelfn/cli/")) for name in listed)
    assert not {name.split("/")[0].split("-")[0] for name in listed} & set(FRAMEWORK_PACKAGES)
    assert not any("/tests/" in name for name in listed)
    # Bytecode for the target Python, valid whatever dates the zip gives its sources.
    assert f"modelfn/__pycache__/function.cpython-{PYTHON.replace('.', '')}.pyc" in listed
    assert f"numpy/__pycache__/__init__.cpython-{PYTHON.replace('.', '')}.pyc" in listed
    assert report.bytecode.startswith("precompiled")
    assert report.sizes["zipped"] == archive.stat().st_size < 50 * 1024 * 1024
    assert names(report.requirements) == {
        "flatbuffers", "msgspec", "numpy", "onnxruntime", "orjson", "packaging", "prometheus_client", "protobuf",
        "pyyaml", "python-multipart", "pillow"
    }  # fmt: skip
    assert not any(name.startswith("onnxruntime/quantization/") for name in listed)

    event = {
        "version": "2.0",
        "rawPath": "/predict",
        "requestContext": {"http": {"method": "POST"}, "stage": "$default"},
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"image": [[0, 0, 5, 13, 9, 1, 0, 0]] * 8}),
        "isBase64Encoded": False,
    }
    # A photo too, as API Gateway passes a binary body: base64, with its Content-Type (Pillow is in the zip).
    from PIL import Image

    photo = io.BytesIO()
    Image.fromarray(np.kron(np.eye(8, dtype=np.uint8) * 255, np.ones((8, 8), np.uint8)), "L").save(photo, "PNG")
    photo_event = {**event, "headers": {"content-type": "image/png"}, "isBase64Encoded": True,
                   "body": base64.b64encode(photo.getvalue()).decode()}  # fmt: skip
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(tmp_path / 'task')!r})\n"
        "import lambda_function\n"
        f"photo = lambda_function.handler({photo_event!r}, None)\n"
        "assert photo['statusCode'] == 200, photo\n"
        f"print(json.dumps(lambda_function.handler({event!r}, None)))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{(*FRAMEWORK_PACKAGES, 'functions_framework', 'flask')!r})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result, imported = (json.loads(line) for line in done.stdout.splitlines()[-2:])
    assert result["statusCode"] == 200 and json.loads(result["body"])["digit"] in range(10)
    assert imported == []
    # Reproducible: the same inputs give the same bytes (sorted entries, fixed dates).
    first = archive.read_bytes()
    assert Path(build(DIGITS, "lambda", out, python=PYTHON).output).read_bytes() == first


@pytest.mark.slow
def test_the_gcf_zip_serves_from_a_clean_virtual_environment(out, tmp_path) -> None:
    """The group function's source zip, its requirements.txt installed into a new venv, under functions-framework."""
    report = build(ENSEMBLE, "gcf", out, python=PYTHON)
    with zipfile.ZipFile(report.output) as bundle:
        bundle.extractall(tmp_path / "source")
    source = tmp_path / "source"
    assert (source / "main.py").is_file() and (source / "ensemble" / "modelfn.yaml").is_file()
    assert not (source / "train.py").exists()
    record = json.loads((source / "mlp" / ".modelfn" / "verified.json").read_text())  # hashed once, at build
    assert set(record["files"]) == {"model.onnx"}
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "-r", str(source / "requirements.txt")],
        check=True, timeout=600,
    )  # fmt: skip
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VIRTUAL_ENV", "PYTHON"))}
    server = subprocess.Popen(
        [str(python), "-m", "functions_framework", "--target", "handle", "--source", "main.py", "--port", str(port)],
        cwd=source, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        body = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [3.0] * 64}]}
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = requests.post(f"http://127.0.0.1:{port}/v2/models/ensemble/infer", json=body, timeout=30)
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()
                time.sleep(0.1)
        assert answer.status_code == 200, answer.text
        assert {output["name"] for output in answer.json()["outputs"]} >= {"mlp_probabilities"}
        probe = "import importlib.util as u; print([m for m in ('tensorflow', 'sklearn') if u.find_spec(m)])"
        modules = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
        assert modules.stdout.strip() == "[]"  # the venv holds no framework the contracts do not need
    finally:
        server.kill()
        server.wait()


@pytest.mark.slow
def test_a_tensorflow_function_over_lambdas_limit_fails_before_installing(out) -> None:
    """The wheels' own directories give the unzipped size, so nothing 1.5 GB is unpacked to say no."""
    with pytest.raises(BuildError) as error:
        build(KERAS, "lambda", out, python=PYTHON)
    message = error.value.message
    assert "does not fit lambda: unzipped" in message and "250 MB limit" in message
    assert (
        "convert the model to ONNX (`modelfn convert`), which needs ONNX Runtime and numpy only, or" in message
        and "--target lambda-image" in message
    )
    assert not (out / "digits-keras-lambda").exists()  # a failed build leaves nothing of its own behind


@pytest.mark.slow
@pytest.mark.parametrize("target", ["cloudrun", "lambda-image"])
def test_container_targets_write_a_build_context(out, target) -> None:
    report = build(DIGITS, target, out, python=PYTHON)
    context = Path(report.output)
    dockerfile = (context / "Dockerfile").read_text()
    assert "{{python}}" not in dockerfile and PYTHON in dockerfile
    requirements = names(line for line in (context / "requirements.txt").read_text().splitlines() if "==" in line)
    assert ("functions-framework" in requirements) == (target == "cloudrun")
    assert (context / "lambda_function.py").is_file() == (target == "lambda-image")
    assert 'CMD ["lambda_function.handler"]' in dockerfile or "modelfn.adapters.server --target handle" in dockerfile


@pytest.mark.slow
def test_a_cold_start_budget_is_measured_on_the_built_bundle_and_fails_the_build(out, function_copy) -> None:
    """A Lambda zip runs as Lambda does (bare interpreter, its own packages); a gcf bundle under functions-framework."""
    constraints = ROOT / "packaging" / "constraints.txt"
    roomy = function_copy(deploy={"cold_start_budget_ms": 120_000})
    report = build(roomy, "lambda", out, python=PYTHON, constraints=constraints)
    phases = report.cold_start
    assert 0 < phases["total"] < 120_000
    assert {"interpreter", "imports (init)", "fetch(local)", "deserialize", "warmup", "request"} <= set(phases)
    assert any(line.startswith("cold start ") for line in report.lines())
    tight = function_copy(deploy={"cold_start_budget_ms": 1})
    with pytest.raises(BuildError, match=r"cold start [\d,]+ ms is over deploy\.cold_start_budget_ms \(1 ms\).*"
                                         r"deserialize [\d.]+ ms"):  # fmt: skip
        build(tight, "gcf", out, python=PYTHON, constraints=constraints)
    name = FunctionLayout.read(tight).name
    assert [path.name for path in out.glob(f"{name}-gcf*")] == []  # its zip, folder and report are gone
    assert (out / ".wheels").is_dir()  # the wheel folder it shares with earlier builds stays


@pytest.mark.slow
def test_a_time_to_first_token_budget_streams_from_the_built_bundle(out, tmp_path) -> None:
    """functions/chat built for Cloud Functions: warm streamed completions are timed; over the budget fails."""
    from generative import CHAT
    from helpers import copy_function, edit_contract

    constraints = ROOT / "packaging" / "constraints.txt"
    folder = copy_function(tmp_path, CHAT)
    edit_contract(folder, deploy={"ttft_budget_ms": 60_000})
    report = build(folder, "gcf", out, python=PYTHON, constraints=constraints)
    assert 0 < report.cold_start["time to first token (warm)"] < 60_000
    edit_contract(folder, deploy={"ttft_budget_ms": 1})
    with pytest.raises(BuildError, match=r"time to first token [\d.,]+ ms \(median of 5 warm streams\) is over "
                                         r"deploy\.ttft_budget_ms \(1 ms\)"):  # fmt: skip
        build(folder, "gcf", out, python=PYTHON, constraints=constraints)
    digits = copy_function(tmp_path, deploy={"ttft_budget_ms": 100})
    with pytest.raises(BuildError, match=r"deploy\.ttft_budget_ms is for generative models"):
        build(digits, "gcf", out, python=PYTHON, constraints=constraints)


def test_a_python_on_path_that_cannot_run_only_costs_the_bytecode(tmp_path, monkeypatch) -> None:
    """A pyenv shim names python3.X and exits 127: the build warns and goes on, as for no python3.X."""
    other = "3.12" if PYTHON != "3.12" else "3.13"
    shim = tmp_path / "bin" / f"python{other}"
    shim.parent.mkdir()
    shim.write_text(f"#!/bin/sh\necho 'pyenv: python{other}: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}{os.pathsep}{os.environ['PATH']}")
    from modelfn.tooling.build import precompile

    said = precompile(tmp_path, other)
    assert said.startswith(f"not precompiled: the python{other} on this machine does not run")
    assert f"pass --python {PYTHON}" in said


@pytest.mark.slow
def test_the_dataflow_target_is_a_flex_template_whose_launcher_runs_the_batch_pipeline(out, tmp_path) -> None:
    """Pinned to the set Beam's tests ran with; its launch.py, run with the bundle first on the path, predicts."""
    report = build(DIGITS, "dataflow", out)
    context = Path(report.output)
    pins = dict(line.split("==") for line in (context / "requirements.txt").read_text().splitlines() if "==" in line)
    engines = dict(line.split("==") for line in (ROOT / "packaging/tools/engines.txt").read_text().splitlines()
                   if "==" in line)  # fmt: skip
    assert pins["apache-beam"] == engines["apache-beam"] and int(pins["protobuf"].split(".")[0]) < 7
    assert "functions-framework" not in pins and "onnxruntime" in pins
    dockerfile = (context / "Dockerfile").read_text()
    assert f"apache/beam_python3.11_sdk:{pins['apache-beam']}" in dockerfile and "{{" not in dockerfile
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in dockerfile
    metadata = json.loads((context / "metadata.json").read_text())
    assert [p["name"] for p in metadata["parameters"] if not p["isOptional"]] == ["input", "output"]

    (tmp_path / "in.jsonl").write_text((DIGITS / "heldout.jsonl").read_text())
    run_engine(str(context / "launch.py"), f"--input={tmp_path / 'in.jsonl'}", f"--output={tmp_path / 'beam'}",
               f"--function={context}", PYTHONPATH=str(context))  # fmt: skip
    batch_here(str(DIGITS), str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "here"))
    for kind in ("predictions", "errors"):
        name = f"in.jsonl.{kind}.jsonl"
        assert (tmp_path / "beam" / name).read_bytes() == (tmp_path / "here" / name).read_bytes()


def test_a_pytorch_bundle_says_where_its_cpu_wheel_comes_from() -> None:
    from modelfn.tooling.build import TORCH_CPU_INDEX

    report = BuildReport("digits-torch", "cloudrun", PYTHON, "dist/x", ["numpy==2.0.0", "torch==2.13.0+cpu"])
    line = next(line for line in report.lines() if line.startswith("pytorch "))
    assert "torch==2.13.0+cpu" in line and TORCH_CPU_INDEX in line and "not PyPI" in line
    assert not any(line.startswith("pytorch ") for line in BuildReport("d", "gcf", PYTHON, "o", ["numpy==2"]).lines())
