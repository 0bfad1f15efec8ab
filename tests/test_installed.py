"""modelfn as a user has it: the wheel ``python -m build`` makes, in a clean venv, in a folder outside the checkout.

One venv for the module (the wheel and what it pulls in, pinned by the shipped constraints), one
project made by ``modelfn new``; each test runs the ``modelfn`` command of that venv with the
project as its working directory and no path back to this checkout. The model is the user's own:
a scikit-learn classifier trained here and converted to ONNX.
"""

from __future__ import annotations

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
import yaml
from helpers import ROOT, LoggedProcess, free_port

pytestmark = pytest.mark.slow


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, object]:
    """``{"modelfn": the venv's command, "env": an environment without this checkout, "work": a folder}``."""
    root = tmp_path_factory.mktemp("installed")
    built = run([sys.executable, "-m", "build", "--outdir", str(root / "dist"), str(ROOT)], root, dict(os.environ))
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels = list((root / "dist").glob("modelfn-*.whl"))
    assert len(wheels) == 1 and list((root / "dist").glob("modelfn-*.tar.gz"))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    venv = root / "venv"
    assert run([sys.executable, "-m", "venv", str(venv)], root, env).returncode == 0
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    assert run([*pip, "--upgrade", "pip"], root, env).returncode == 0
    with zipfile.ZipFile(wheels[0]) as wheel:  # the pins the wheel itself ships
        pins = root / "constraints.txt"
        pins.write_bytes(wheel.read("modelfn/tooling/assets/pins/constraints.txt"))
    done = run([*pip, "-c", str(pins), str(wheels[0]), "pytest"], root, env)  # a new project's requirements.txt
    assert done.returncode == 0, done.stderr[-3000:]
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    work = root / "work"
    work.mkdir()
    return {"modelfn": str(venv / "bin" / "modelfn"), "python": python, "env": env, "work": work,
            "wheel": str(wheels[0]), "pins": str(pins)}  # fmt: skip


def user_model(path: Path) -> np.ndarray:
    """A classifier of the user's own (iris, logistic regression) as ONNX; returns rows to ask it."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(x.astype(np.float32), y)
    proto = convert_sklearn(model, initial_types=[("measurements", FloatTensorType([None, 4]))],
                            options={id(model): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})  # fmt: skip
    path.write_bytes(proto.SerializeToString())
    return x[:3].astype(np.float32)


@pytest.fixture(scope="module")
def project(installed) -> Path:
    """``modelfn new proj``, then ``modelfn init`` of the user's model inside it."""
    work, env, modelfn = installed["work"], installed["env"], installed["modelfn"]
    made = run([modelfn, "new", "proj"], work, env)
    assert made.returncode == 0, made.stderr
    proj = work / "proj"
    user_model(work / "risk.onnx")
    init = run([modelfn, "init", "../risk.onnx", "--name", "risk", "--description", "Iris species"], proj, env)
    assert init.returncode == 0, init.stderr
    return proj


def test_new_writes_a_project_laid_out_as_the_example_repository(project) -> None:
    expected = ["functions/risk/modelfn.yaml", "infra/gcp/main.tf", "infra/aws/main.tf", "infra/modules/gcp/main.tf",
                "infra/modules/aws/main.tf", "cloudbuild.yaml", "serverless.yml", ".gitignore", "README.md",
                "Makefile", "requirements.txt", "tests/test_functions.py"]  # fmt: skip
    for relative in expected:
        assert (project / relative).is_file(), relative
    shipped = ROOT / "src" / "modelfn" / "tooling" / "assets" / "terraform" / "modules" / "gcp" / "main.tf"
    assert (project / "infra/modules/gcp/main.tf").read_text() == shipped.read_text()


def test_check_loads_the_model_and_runs_its_example(installed, project) -> None:
    done = run([installed["modelfn"], "check", "functions/risk"], project, installed["env"])
    assert done.returncode == 0 and done.stdout.rstrip().endswith("ok"), done.stdout + done.stderr


def _served(installed, folder: str, cwd: Path, log: Path) -> tuple[LoggedProcess, str]:
    """``modelfn serve folder`` of the venv, in ``cwd``, once it answers ``/v2/health/ready``."""
    port = free_port()
    command = [installed["modelfn"], "serve", folder, "--port", str(port)]
    server = LoggedProcess(command, log, installed["env"], cwd=cwd)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=10).status_code == 200:
                return server, url
        except requests.ConnectionError:
            pass
        assert server.process.poll() is None, server.log()
        time.sleep(0.2)
    server.stop()
    raise AssertionError(f"{folder} was not ready in 120 s: {server.log()[-3000:]}")


def test_serve_answers_the_open_inference_protocol(installed, project, tmp_path) -> None:
    server, url = _served(installed, "functions/risk", project, tmp_path / "serve.log")
    try:
        rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
        body = {"inputs": [{"name": "measurements", "shape": [2, 4], "datatype": "FP32", "data": rows}]}
        answer = requests.post(f"{url}/v2/models/risk/infer", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        labels = next(o for o in answer.json()["outputs"] if o["datatype"] == "INT64")["data"]
        assert labels == [0, 2]
    finally:
        server.stop()
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("target", ["lambda", "cloudrun"])
def test_build_works_from_the_installed_package(installed, project, target) -> None:
    done = run([installed["modelfn"], "build", "functions/risk", "--target", target], project, installed["env"])
    assert done.returncode == 0, done.stdout + done.stderr
    requirements = (project / "dist" / f"risk-{target}" / "requirements.txt").read_text()
    shipped = dict(line.split("==") for line in (ROOT / "packaging" / "constraints.txt").read_text().splitlines()
                   if "==" in line and not line.startswith("#"))  # fmt: skip
    assert f"numpy=={shipped['numpy']}" in requirements  # pinned by the shipped constraints, not the newest
    if target == "cloudrun":
        assert (project / "dist" / "risk-cloudrun" / "Dockerfile").read_text().startswith("# Cloud Run image")
    else:
        assert (project / "dist" / "risk-lambda.zip").is_file()


def test_render_digests_and_the_projects_own_test(installed, project) -> None:
    env, modelfn = installed["env"], installed["modelfn"]
    rendered = run([modelfn, "render"], project, env)
    assert rendered.returncode == 0 and "infra/kubernetes/risk.yaml" in rendered.stdout, rendered.stderr
    assert run([modelfn, "render", "--check"], project, env).returncode == 0
    assert json.loads((project / "infra/aws/functions.auto.tfvars.json").read_text())["functions"]["risk"]
    digests = run([modelfn, "digests", "functions/risk"], project, env)  # the contract names risk.onnx
    pinned = yaml.safe_load((project / "functions/risk/modelfn.yaml").read_text())["artifact"]["sha256"]
    assert digests.returncode == 0 and f"sha256: {pinned}" in digests.stdout and "uri: risk.onnx" in digests.stdout
    missing = run([modelfn, "digests", "functions/risk", "--model", "nothing.onnx"], project, env)
    assert missing.returncode == 1 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    tested = run([installed["python"], "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], project, env)
    assert tested.returncode == 0 and "2 passed" in tested.stdout, tested.stdout[-3000:]  # the project's own test


def test_convert_without_its_extra_names_it(installed, project, tmp_path) -> None:
    """The wheel alone has no converters: ``modelfn convert`` says which extra brings them, no traceback."""
    folder = project / "functions" / "risk"
    contract = yaml.safe_load((folder / "modelfn.yaml").read_text())
    np.savez(folder / "validation.npz", measurements=np.ones((4, 4), np.float32))
    contract["validation"] = "validation.npz"
    (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    try:
        done = run([installed["modelfn"], "convert", "functions/risk", "--out", str(tmp_path / "q"), "--quantize",
                    "int8"], project, installed["env"])  # fmt: skip
    finally:
        del contract["validation"]
        (folder / "modelfn.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
        (folder / "validation.npz").unlink()
    assert done.returncode == 1 and "pip install 'modelfn[convert]'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_pipeline_fitted_on_a_dataframe_is_served_from_the_wheel(installed, tmp_path) -> None:
    """The user's scikit-learn pipeline (named, mixed-type columns): ``pip install 'modelfn[sklearn]'``,
    ``init --example --trust``, ``check`` and a batch job over a CSV by its header, outside the checkout."""
    env, modelfn = installed["env"], installed["modelfn"]
    pip = [installed["python"], "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    done = run([*pip, "-c", installed["pins"], f"{installed['wheel']}[sklearn]"], tmp_path, env)
    assert done.returncode == 0, done.stderr[-3000:]
    churn = ROOT / "functions" / "churn"
    (tmp_path / "churn.skops").write_bytes((churn / "model.skops").read_bytes())  # the user's own file
    (tmp_path / "customers.csv").write_text((churn / "validation.csv").read_text())
    row = {"tenure": 12, "plan": "pro", "contract": "month-to-month", "monthly": 45.5}
    (tmp_path / "row.json").write_text(json.dumps(row))
    assert run([modelfn, "new", "shop"], tmp_path, env).returncode == 0
    shop = tmp_path / "shop"
    asked = run([modelfn, "init", "../churn.skops", "--name", "churn", "--trust", "numpy.dtype"], shop, env)
    assert asked.returncode == 1 and "--example" in asked.stderr and "Traceback" not in asked.stderr, asked.stderr
    init = run([modelfn, "init", "../churn.skops", "--name", "churn", "--trust", "numpy.dtype",
                "--example", "../row.json", "--description", "Who leaves"], shop, env)  # fmt: skip
    assert init.returncode == 0, init.stderr
    contract = yaml.safe_load((shop / "functions" / "churn" / "modelfn.yaml").read_text())
    assert [(i["name"], i["datatype"]) for i in contract["inputs"]] == [
        ("tenure", "INT64"), ("plan", "BYTES"), ("contract", "BYTES"), ("monthly", "FP64")]  # fmt: skip
    assert contract["example"] == row and "hooks" not in contract
    assert contract["table"] == {"as": "dataframe", "nullable": ["monthly"]}
    checked = run([modelfn, "check", "functions/churn"], shop, env)
    assert checked.returncode == 0 and checked.stdout.rstrip().endswith("ok"), checked.stdout + checked.stderr
    batch = run([modelfn, "batch", "functions/churn", "../customers.csv", "--output", "out"], shop, env)
    # 24 customers have no monthly charge: the imputer's column, which init made nullable.
    assert batch.returncode == 0 and "1,000 rows, 1,000 predicted, 0 failed" in batch.stdout, batch.stderr[-3000:]


def test_a_generative_model_and_a_text_encoder_are_served_from_the_wheel(installed, tmp_path) -> None:
    """``pip install 'modelfn[genai,text]'``; ``init`` on the model builder's folder; a streamed chat answer and
    an embedding from ``modelfn serve``, outside the checkout."""
    import shutil

    env, modelfn = installed["env"], installed["modelfn"]
    pip = [installed["python"], "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    done = run([*pip, "-c", installed["pins"], f"{installed['wheel']}[genai,text]"], tmp_path, env)
    assert done.returncode == 0, done.stderr[-3000:]
    shutil.copytree(ROOT / "functions" / "chat" / "model", tmp_path / "builder-output")  # the user's own folder
    assert run([modelfn, "new", "gen"], tmp_path, env).returncode == 0
    gen = tmp_path / "gen"
    init = run([modelfn, "init", "../builder-output", "--name", "chat"], gen, env)
    assert init.returncode == 0, init.stderr
    encoder = gen / "functions" / "embed"  # a text encoder the user wrote a contract for, as functions/embed does
    encoder.mkdir()
    for name in ("modelfn.yaml", "model.onnx", "tokenizer.json", "main.py"):
        shutil.copy(ROOT / "functions" / "embed" / name, encoder / name)

    server, url = _served(installed, "functions/chat", gen, tmp_path / "chat.log")
    try:
        body = {"model": "chat", "messages": [{"role": "user", "content": "how can I deploy to aws lambda"}],
                "stream": True, "max_tokens": 24}  # fmt: skip
        with requests.post(f"{url}/openai/v1/chat/completions", json=body, timeout=60, stream=True) as answer:
            assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/event-stream")
            events = [line for line in answer.iter_lines() if line]
        assert events[-1] == b"data: [DONE]" and len(events) >= 5, events
        pieces = [json.loads(e.removeprefix(b"data: "))["choices"] for e in events[:-1]]
        text = "".join(c[0]["delta"].get("content") or "" for c in pieces if c)
        assert len(text.split()) >= 3, text
    finally:
        server.stop()
    assert "Traceback" not in server.log()

    server, url = _served(installed, "functions/embed", gen, tmp_path / "embed.log")
    try:
        body = {"model": "embed", "input": ["how do I deploy to cloud run", "what is modelfn"]}
        answer = requests.post(f"{url}/openai/v1/embeddings", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        vectors = [np.asarray(item["embedding"]) for item in answer.json()["data"]]
        assert [v.shape for v in vectors] == [(64,), (64,)]  # the contract's size, normalized
        assert np.allclose([np.linalg.norm(v) for v in vectors], 1.0, atol=1e-4)
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def tutorial_steps() -> list[tuple[str, list[str]]]:
    """docs/tutorial.md's ``bash`` blocks, in order, each with the lines of the ``text`` block after it."""
    import re

    text = (ROOT / "docs" / "tutorial.md").read_text()
    steps: list[tuple[str, list[str]]] = []
    for kind, body in re.findall(r"```(\w+)\n(.*?)```", text, flags=re.S):
        if kind == "bash":
            steps.append((body, []))
        elif kind == "text" and steps:
            steps[-1][1].extend(line.strip() for line in body.splitlines() if line.strip())
    return steps


def test_the_tutorial_runs_verbatim(installed, tmp_path) -> None:
    """Every ``bash`` block of the tutorial, in a folder outside the checkout, with the installed wheel (the
    tutorial's ``sh`` install block is what the fixture does); each shows the output lines the page says."""
    from helpers import terraform_env

    work = tmp_path / "tutorial"
    work.mkdir()
    user_model(work / "model.onnx")
    env = {**installed["env"], **{k: v for k, v in terraform_env(tmp_path).items() if k.startswith(("TF_", "CHECK"))}}
    steps = tutorial_steps()
    assert len(steps) == 5 and all(expected for _, expected in steps)
    cwd, state = work, tmp_path / "cwd"
    for block, expected in steps:
        script = f"set -e\ncd {cwd}\n{block}\npwd > {state}\n"
        done = run(["bash", "-c", script], work, env, timeout=600)
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{block}\n{output[-3000:]}"
        missing = [line for line in expected if line not in output]
        assert not missing, f"{block}\nmissing {missing} in:\n{output[-3000:]}"
        cwd = Path(state.read_text().strip())
    assert (cwd / "dist" / "risk-lambda.zip").is_file() and (cwd / "infra/aws/deploy.auto.tfvars.json").is_file()
